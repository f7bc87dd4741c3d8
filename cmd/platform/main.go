// Command platform is the Pulumi program (Pulumi.yaml main:).
package main

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		return nil // wired to program.Run once infra and stacks land
	})
}
