// Throwaway wrapper module: builds the Traefik binary for the local Swarm
// proof (swarmtest/) without putting Traefik's dependency tree into the
// project's own go.mod. The nested go.mod keeps this directory out of the main
// module. Build: see build.sh.
module github.com/jbcalling/platform/tools/traefik

go 1.22

require github.com/traefik/traefik/v3 v3.0.4

// Copied from Traefik v3.0.4's go.mod: replace/exclude of a dependency are
// not inherited, and the build fails without them.
replace (
	github.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-0.20200324110947-a37a7636d23e
	github.com/gorilla/mux => github.com/containous/mux v0.0.0-20220627093034-b2dd784e613f
	github.com/mailgun/minheap => github.com/containous/minheap v0.0.0-20190809180810-6e71eb837595
)

replace github.com/jaguilar/vt100 => github.com/tonistiigi/vt100 v0.0.0-20190402012908-ad4c4a574305

exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible

replace github.com/cucumber/godog => github.com/cucumber/godog v0.13.0
