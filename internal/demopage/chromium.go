package demopage

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromium drives one Chromium process over the DevTools protocol.
type chromium struct {
	ctx context.Context
}

func startChromium(t *testing.T, execPath, dir string, o Options, p *Page) (driver, error) {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(dir),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		// Host candidates as IP addresses, not mDNS names.
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.WindowSize(1100, 800),
	}
	for k, v := range o.Flags {
		opts = append(opts, chromedp.Flag(k, v))
	}
	if o.Netns != "" {
		opts = append(opts, chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			ip, err := exec.LookPath("ip")
			if err != nil {
				ip = "ip"
			}
			cmd.Args = append([]string{"ip", "netns", "exec", o.Netns, execPath}, cmd.Args[1:]...)
			cmd.Path = ip
			if cmd.SysProcAttr == nil {
				cmd.SysProcAttr = &syscall.SysProcAttr{}
			}
			cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		}))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, strings.Trim(string(a.Value), `"`))
			}
			p.console(string(ev.Type), strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			text := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				text = d.Exception.Description
			}
			p.exception(text)
		}
	})
	if err != nil {
		return nil, err
	}
	return &chromium{ctx: ctx}, nil
}

func (c *chromium) navigate(ctx context.Context, url string) error {
	bctx, cancel := c.bound(ctx)
	defer cancel()
	return chromedp.Do(bctx, chromedp.Navigate(url))
}

func (c *chromium) evalJSON(ctx context.Context, script string) (string, error) {
	bctx, cancel := c.bound(ctx)
	defer cancel()
	return chromedp.Run(bctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
}

func (c *chromium) screenshot(ctx context.Context) ([]byte, error) {
	bctx, cancel := c.bound(ctx)
	defer cancel()
	return chromedp.Run(bctx, chromedp.FullScreenshot(100))
}

// bound gives the browser's context the deadline of ctx.
func (c *chromium) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok {
		return context.WithDeadline(c.ctx, d)
	}
	return c.ctx, func() {}
}
