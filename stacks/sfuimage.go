package stacks

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pulumi/pulumi-command/sdk/go/command/local"
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/organizations"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// SFUBuildArgs say how the program builds and pushes the SFU image.
type SFUBuildArgs struct {
	// RepoRoot is the repository root (the directory holding go.mod and
	// sfu/); the Pulumi program runs there, so "." by default.
	RepoRoot string
	// NodeServiceAccount is the nodes' service account email (infra
	// output); it gets Artifact Registry read access so nodes pull the image.
	NodeServiceAccount pulumi.StringInput
}

// sfuBinary is where the static binary is built, relative to the repo root;
// sfu/Dockerfile copies it (the image is FROM scratch: no builder stage,
// because no base image can be pulled where it is built).
const sfuBinary = "sfu/bin/sfu"

// SourceHash hashes every file under dir except build output (bin/) and
// tests, in path order: the trigger that rebuilds the binary and the tag of
// the pushed image, so any change under sfu/ rolls the SFU on the next up.
func SourceHash(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if e.IsDir() {
			if rel == "bin" || strings.HasPrefix(e.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, "_test.go") || strings.Contains(filepath.ToSlash(rel), "/testdata/") || strings.HasPrefix(filepath.ToSlash(rel), "testdata/") {
			return nil
		}
		files = append(files, rel)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", dir, err)
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		fh, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00", filepath.ToSlash(f))
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return "", err
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// buildSFU declares the Artifact Registry repository (with reader access
// for the nodes), the static binary build, and the image build + push. It
// returns the pushed repo digest, which the SFU service runs.
func buildSFU(ctx *pulumi.Context, name string, args *StackArgs, parent pulumi.ResourceOption) (pulumi.StringOutput, error) {
	b := args.SFUBuild
	root := b.RepoRoot
	if root == "" {
		root = "."
	}
	if b.NodeServiceAccount == nil {
		return pulumi.StringOutput{}, fmt.Errorf("stacks.NewStack %s: SFUBuild.NodeServiceAccount is required (nodes pull the SFU image with it)", name)
	}
	hash, err := SourceHash(filepath.Join(root, "sfu"))
	if err != nil {
		return pulumi.StringOutput{}, fmt.Errorf("stacks.NewStack %s: %w", name, err)
	}
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
		return pulumi.StringOutput{}, err
	}
	reader, err := artifactregistry.NewRepositoryIamMember(ctx, name+"-images-reader", &artifactregistry.RepositoryIamMemberArgs{
		Project:    repo.Project,
		Location:   repo.Location,
		Repository: repo.Name,
		Role:       pulumi.String("roles/artifactregistry.reader"),
		Member:     pulumi.Sprintf("serviceAccount:%s", b.NodeServiceAccount),
	}, gcpOpts...)
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	bin, err := local.NewCommand(ctx, name+"-sfu-binary", &local.CommandArgs{
		Create:      pulumi.String("go build -trimpath -ldflags='-s -w' -o " + sfuBinary + " ./sfu/cmd/sfu"),
		Dir:         pulumi.String(root),
		Environment: pulumi.StringMap{"CGO_ENABLED": pulumi.String("0"), "GOOS": pulumi.String("linux"), "GOARCH": pulumi.String("amd64")},
		Triggers:    pulumi.Array{pulumi.String(hash)},
	}, parent)
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	registry := fmt.Sprintf("%s-docker.pkg.dev", cl.Region)
	token := organizations.GetClientConfigOutput(ctx, pulumi.Parent(repo)).AccessToken()
	// The image builds on the deployer's local engine (default docker
	// provider), never on the swarm manager.
	img, err := docker.NewImage(ctx, name+"-sfu-image", &docker.ImageArgs{
		ImageName: pulumi.Sprintf("%s/%s/%s/sfu:%s", registry, cl.Project, repo.RepositoryId, hash[:16]),
		Build: &docker.DockerBuildArgs{
			Context:    pulumi.String(filepath.Join(root, "sfu")),
			Dockerfile: pulumi.String(filepath.Join(root, "sfu", "Dockerfile")),
			Platform:   pulumi.String("linux/amd64"),
		},
		Registry: &docker.RegistryArgs{
			Server:   pulumi.String(registry),
			Username: pulumi.String("oauth2accesstoken"),
			Password: pulumi.ToSecret(token).(pulumi.StringOutput),
		},
	}, parent, pulumi.DependsOn([]pulumi.Resource{bin, reader}))
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	return img.RepoDigest, nil
}
