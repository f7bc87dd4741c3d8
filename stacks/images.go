package stacks

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/pulumi/pulumi-command/sdk/go/command/local"
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/artifactregistry"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/organizations"
	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/serviceaccount"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ImageBuildArgs say how the program builds and pushes the images of the
// services it builds from this repository (Service.Build: the SFU and the
// translation agent).
type ImageBuildArgs struct {
	// RepoRoot is where to start looking for the repository root (the
	// directory holding go.mod); default the working directory.
	RepoRoot string
	// NodeServiceAccount is the nodes' service account email (infra
	// output); it gets Artifact Registry read access so nodes pull the images.
	NodeServiceAccount pulumi.StringInput
}

// ownImage is an image the program builds: the directories its binary and
// image are built from, and the script that builds and pushes it.
type ownImage struct {
	dirs   []string
	script string
}

// ownImages are the images the program builds, by the service that runs
// them. The agent imports the SFU's client and protocol packages, so a
// change under sfu/ rebuilds it too.
var ownImages = map[string]ownImage{
	"sfu":   {dirs: []string{"sfu"}, script: sfuImageScript},
	"agent": {dirs: []string{"agent", "sfu"}, script: agentImageScript},
}

// SourceHash hashes what service's image is built from: every file under
// its directories except tests, test data and dot-dirs, plus go.mod and
// go.sum (a dependency bump changes the binary), in path order. It is the
// trigger of the build and the tag of the pushed image, so any such change
// rolls the service on the next up, and nothing else does.
func SourceHash(root, service string) (string, error) {
	img, ok := ownImages[service]
	if !ok {
		return "", fmt.Errorf("the program builds no image for %q", service)
	}
	files := []string{"go.mod", "go.sum"}
	for _, dir := range img.dirs {
		top := filepath.Join(root, dir)
		err := filepath.WalkDir(top, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if e.IsDir() {
				if p != top && (strings.HasPrefix(e.Name(), ".") || e.Name() == "testdata") {
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
			return "", fmt.Errorf("hash %s: %w", top, err)
		}
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", fmt.Errorf("hash the %s sources: %w", service, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

//go:embed sfu-image.sh
var sfuImageScript string

//go:embed agent-image.sh
var agentImageScript string

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

// imageSources is the checked-out source to build from: the repository
// root relative to the working directory and the source hash of each image
// to build, by service.
type imageSources struct {
	rel    string
	hashes map[string]string
}

// findSources finds and hashes the sources of the services to build;
// NewStack calls it before it registers anything, so a missing checkout
// fails cleanly.
func findSources(name string, b *ImageBuildArgs, services []string) (*imageSources, error) {
	if b == nil {
		return nil, fmt.Errorf("stacks.NewStack %s: %s: set Build, or a prebuilt image in Prebuilt", name, strings.Join(services, ", "))
	}
	if b.NodeServiceAccount == nil {
		return nil, fmt.Errorf("stacks.NewStack %s: Build.NodeServiceAccount is required (nodes pull the built images with it)", name)
	}
	start := b.RepoRoot
	if start == "" {
		start = "."
	}
	root, err := repoRoot(start)
	if err != nil {
		return nil, fmt.Errorf("stacks.NewStack %s: image build: %w", name, err)
	}
	src := &imageSources{rel: root, hashes: map[string]string{}}
	for _, svc := range services {
		if src.hashes[svc], err = SourceHash(root, svc); err != nil {
			return nil, fmt.Errorf("stacks.NewStack %s: %w", name, err)
		}
	}
	// Relative to the working directory, so state does not change between
	// machines that check the repository out in different places.
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, root); err == nil {
			src.rel = r
		}
	}
	return src, nil
}

// buildImages declares the Artifact Registry repository (with reader
// access for the nodes) and the build + push of each image in src, and
// returns the pushed repo digests, which the services run, with the
// registry auth those services carry so workers can pull them.
func buildImages(ctx *pulumi.Context, name string, args *StackArgs, src *imageSources, parent pulumi.ResourceOption) (map[string]pulumi.StringOutput, *docker.ServiceAuthArgs, error) {
	b := args.Build
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
		Description:  pulumi.String("Images built by the platform program (the SFU, the translation agent)"),
	}, gcpOpts...)
	if err != nil {
		return nil, nil, err
	}
	reader, err := artifactregistry.NewRepositoryIamMember(ctx, name+"-images-reader", &artifactregistry.RepositoryIamMemberArgs{
		Project:    repo.Project,
		Location:   repo.Location,
		Repository: repo.Name,
		Role:       pulumi.String("roles/artifactregistry.reader"),
		Member:     pulumi.Sprintf("serviceAccount:%s", b.NodeServiceAccount),
	}, gcpOpts...)
	if err != nil {
		return nil, nil, err
	}
	registry := cl.Region + "-docker.pkg.dev"
	invokeOpts := []pulumi.InvokeOption{pulumi.Parent(repo)}
	if args.GCPProvider != nil {
		invokeOpts = append(invokeOpts, pulumi.Provider(args.GCPProvider))
	}
	token := organizations.GetClientConfigOutput(ctx, invokeOpts...).AccessToken()
	digests := map[string]pulumi.StringOutput{}
	for _, svc := range slices.Sorted(maps.Keys(src.hashes)) {
		hash := src.hashes[svc]
		// One command builds the binary and the image and pushes it; it
		// runs only when the source hash (the trigger and the tag) changes.
		build, err := local.NewCommand(ctx, name+"-"+svc+"-image", &local.CommandArgs{
			Create:      pulumi.String(ownImages[svc].script),
			Interpreter: pulumi.ToStringArray([]string{"/bin/bash", "-c"}),
			Environment: pulumi.StringMap{
				"REPO_ROOT":      pulumi.String(src.rel),
				"IMAGE":          pulumi.Sprintf("%s/%s/%s/%s:%s", registry, cl.Project, repo.RepositoryId, svc, hash[:16]),
				"REGISTRY":       pulumi.String(registry),
				"REGISTRY_TOKEN": pulumi.ToSecret(token).(pulumi.StringOutput),
			},
			Triggers: pulumi.Array{pulumi.String(hash)},
		}, parent, pulumi.DependsOn([]pulumi.Resource{reader}))
		if err != nil {
			return nil, nil, err
		}
		digests[svc] = build.Stdout.ApplyT(func(s string) (string, error) {
			d := strings.TrimSpace(s)
			if !strings.Contains(d, "@sha256:") {
				return "", fmt.Errorf("stacks: the %s image build printed %q, want the pushed repo digest", svc, d)
			}
			return d, nil
		}).(pulumi.StringOutput)
	}

	// Swarm workers pull with the registry auth the service spec carries
	// (docker's --with-registry-auth), never with a node-local docker
	// login. A key of the nodes' service account (reader on the
	// repository) is a credential that does not expire like an access
	// token would after an hour; it lives in state only as a secret.
	key, err := serviceaccount.NewKey(ctx, name+"-images-puller", &serviceaccount.KeyArgs{
		ServiceAccountId: b.NodeServiceAccount,
	}, gcpOpts...)
	if err != nil {
		return nil, nil, err
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
	return digests, auth, nil
}
