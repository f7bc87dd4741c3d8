package stacks

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pulumi/pulumi-command/sdk/go/command/local"
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/organizations"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/serviceaccount"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// SFUBuildArgs say how the program builds and pushes the SFU image.
type SFUBuildArgs struct {
	// RepoRoot is where to start looking for the repository root (the
	// directory holding go.mod and sfu/); default the working directory.
	RepoRoot string
	// NodeServiceAccount is the nodes' service account email (infra
	// output); it gets Artifact Registry read access so nodes pull the image.
	NodeServiceAccount pulumi.StringInput
}

// SFUSourceHash hashes what the SFU binary and image are built from: every
// file under <root>/sfu except tests, test data and dot-dirs, plus go.mod
// and go.sum (a dependency bump changes the binary), in path order. It is
// the trigger of the build and the tag of the pushed image, so any such
// change rolls the SFU on the next up, and nothing else does.
func SFUSourceHash(root string) (string, error) {
	files := []string{"go.mod", "go.sum"}
	sfu := filepath.Join(root, "sfu")
	err := filepath.WalkDir(sfu, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if e.IsDir() {
			if p != sfu && (strings.HasPrefix(e.Name(), ".") || e.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, "_test.go") {
			return nil
		}
		files = append(files, rel)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", sfu, err)
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", fmt.Errorf("hash SFU sources: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

//go:embed sfu-image.sh
var sfuImageScript string

// repoRoot finds the directory holding go.mod at or above dir.
func repoRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod at or above %s", abs)
		}
	}
}

// buildSFU declares the Artifact Registry repository (with reader access
// for the nodes) and the build + push of the SFU image, and returns the
// pushed repo digest, which the SFU service runs, with the registry auth the
// service carries so workers can pull it.
// sfuSource is the checked-out SFU source to build: the repository root
// relative to the working directory and the hash of sfu/.
type sfuSource struct {
	rel, hash string
}

// sfuSources finds and hashes the SFU sources; NewStack calls it before it
// registers anything, so a missing checkout fails cleanly.
func sfuSources(name string, b *SFUBuildArgs) (*sfuSource, error) {
	if b == nil {
		return nil, fmt.Errorf("stacks.NewStack %s: set SFUImage (prebuilt) or SFUBuild", name)
	}
	if b.NodeServiceAccount == nil {
		return nil, fmt.Errorf("stacks.NewStack %s: SFUBuild.NodeServiceAccount is required (nodes pull the SFU image with it)", name)
	}
	start := b.RepoRoot
	if start == "" {
		start = "."
	}
	root, err := repoRoot(start)
	if err != nil {
		return nil, fmt.Errorf("stacks.NewStack %s: SFU build: %w", name, err)
	}
	hash, err := SFUSourceHash(root)
	if err != nil {
		return nil, fmt.Errorf("stacks.NewStack %s: %w", name, err)
	}
	// Relative to the working directory, so state does not change between
	// machines that check the repository out in different places.
	rel := root
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, root); err == nil {
			rel = r
		}
	}
	return &sfuSource{rel: rel, hash: hash}, nil
}

func buildSFU(ctx *pulumi.Context, name string, args *StackArgs, src *sfuSource, parent pulumi.ResourceOption) (pulumi.StringOutput, *docker.ServiceAuthArgs, error) {
	b := args.SFUBuild
	rel, hash := src.rel, src.hash
	cl := args.Topology.Config
	gcpOpts := []pulumi.ResourceOption{parent}
	if args.GCPProvider != nil {
		gcpOpts = append(gcpOpts, pulumi.Provider(args.GCPProvider))
	}
	repo, err := artifactregistry.NewRepository(ctx, name+"-images", &artifactregistry.RepositoryArgs{
		RepositoryId: pulumi.String(cl.ResourceName("images")),
		Format:       pulumi.String("DOCKER"),
		Location:     pulumi.String(cl.Region),
		Project:      pulumi.String(cl.Project),
		Description:  pulumi.String("Images built by the platform program (the SFU)"),
	}, gcpOpts...)
	if err != nil {
		return pulumi.StringOutput{}, nil, err
	}
	reader, err := artifactregistry.NewRepositoryIamMember(ctx, name+"-images-reader", &artifactregistry.RepositoryIamMemberArgs{
		Project:    repo.Project,
		Location:   repo.Location,
		Repository: repo.Name,
		Role:       pulumi.String("roles/artifactregistry.reader"),
		Member:     pulumi.Sprintf("serviceAccount:%s", b.NodeServiceAccount),
	}, gcpOpts...)
	if err != nil {
		return pulumi.StringOutput{}, nil, err
	}
	registry := cl.Region + "-docker.pkg.dev"
	invokeOpts := []pulumi.InvokeOption{pulumi.Parent(repo)}
	if args.GCPProvider != nil {
		invokeOpts = append(invokeOpts, pulumi.Provider(args.GCPProvider))
	}
	token := organizations.GetClientConfigOutput(ctx, invokeOpts...).AccessToken()
	// One command builds the binary and the image and pushes it; it runs
	// only when the sfu/ source hash (the trigger and the tag) changes.
	build, err := local.NewCommand(ctx, name+"-sfu-image", &local.CommandArgs{
		Create:      pulumi.String(sfuImageScript),
		Interpreter: pulumi.ToStringArray([]string{"/bin/bash", "-c"}),
		Environment: pulumi.StringMap{
			"REPO_ROOT":      pulumi.String(rel),
			"IMAGE":          pulumi.Sprintf("%s/%s/%s/sfu:%s", registry, cl.Project, repo.RepositoryId, hash[:16]),
			"REGISTRY":       pulumi.String(registry),
			"REGISTRY_TOKEN": pulumi.ToSecret(token).(pulumi.StringOutput),
		},
		Triggers: pulumi.Array{pulumi.String(hash)},
	}, parent, pulumi.DependsOn([]pulumi.Resource{reader}))
	if err != nil {
		return pulumi.StringOutput{}, nil, err
	}
	digest := build.Stdout.ApplyT(func(s string) (string, error) {
		d := strings.TrimSpace(s)
		if !strings.Contains(d, "@sha256:") {
			return "", fmt.Errorf("stacks: SFU image build printed %q, want the pushed repo digest", d)
		}
		return d, nil
	}).(pulumi.StringOutput)

	// Swarm workers pull with the registry auth the service spec carries
	// (docker's --with-registry-auth), never with a node-local docker
	// login. A key of the nodes' service account (reader on the
	// repository) is a credential that does not expire like an access
	// token would after an hour; it lives in state only as a secret.
	key, err := serviceaccount.NewKey(ctx, name+"-images-puller", &serviceaccount.KeyArgs{
		ServiceAccountId: b.NodeServiceAccount,
	}, gcpOpts...)
	if err != nil {
		return pulumi.StringOutput{}, nil, err
	}
	keyJSON := key.PrivateKey.ApplyT(func(k string) (string, error) {
		j, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			return "", fmt.Errorf("stacks: service account key is not base64: %w", err)
		}
		return string(j), nil
	}).(pulumi.StringOutput)
	auth := &docker.ServiceAuthArgs{
		ServerAddress: pulumi.String(registry),
		Username:      pulumi.String("_json_key"),
		Password:      pulumi.ToSecret(keyJSON).(pulumi.StringOutput),
	}
	return digest, auth, nil
}
