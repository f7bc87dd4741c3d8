package infra

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

// DeclareComponent registers comp as a component resource of type typ,
// lets children declare its resources under it (parent is the option
// that makes them its children) and registers the outputs children
// returns: the plumbing every component of the program shares.
func DeclareComponent(ctx *pulumi.Context, typ, name string, comp pulumi.ComponentResource,
	children func(parent pulumi.ResourceOption) (pulumi.Map, error), opts ...pulumi.ResourceOption,
) error {
	if err := ctx.RegisterComponentResource(typ, name, comp, opts...); err != nil {
		return err
	}
	outs, err := children(pulumi.Parent(comp))
	if err != nil {
		return err
	}
	return ctx.RegisterResourceOutputs(comp, outs)
}
