// Command platform is the Pulumi program (Pulumi.yaml main:).
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/jbcalling/platform/program"
)

func main() {
	pulumi.Run(program.Run)
}
