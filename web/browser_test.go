package web_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
)

// browser is one headless Chromium on a Lethe, with the console collected: an exception
// or a blocked resource is a broken page even if it shows something.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// chromium is the browser the tests drive: LETHE_CHROMIUM, or Debian's.
func chromium(t *testing.T) string {
	t.Helper()
	path := os.Getenv("LETHE_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no Chromium for the browser tests: %v\n"+
			"install it (Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y chromium)\n"+
			"or set LETHE_CHROMIUM to a Chrome or Chromium binary; ./test does this for you", err)
	}
	return path
}

func newBrowser(t *testing.T, base string, width int) *browser {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	out := &testkit.SyncBuffer{}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(width, 900),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(out),
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	b := &browser{t: t, ctx: bctx, base: base}
	cctx, stop := context.WithCancel(bctx)
	messages := chromedp.Console(cctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		stop()
		<-done
		if t.Failed() {
			t.Logf("chromium output:\n%s", out)
		}
	})
	return b
}

// checkConsole fails the test on any exception or error the pages wrote, a blocked
// resource (CSP) included.
func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		if m.Source == "network" && strings.HasSuffix(m.URL, "/favicon.ico") {
			continue // the browser asks for it on its own
		}
		if m.Source == "network" && !strings.Contains(m.URL, "/static/") && !strings.Contains(m.URL, "/audit/chart/") &&
			!strings.Contains(m.URL, "/events") {
			continue // a page answered with its refusal's status (403, 409…), which it shows
		}
		if m.IsException() || m.Type == chromedp.ConsoleError {
			b.t.Errorf("console: %s (source %q, %s:%d)", m, m.Source, m.URL, m.Line+1)
		}
	}
	b.console = nil
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// navigate loads a page of the client.
func (b *browser) navigate(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path))
}

// submit runs act, which sends a form, and waits for the page it leads to.
func (b *browser) submit(what string, act chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.do(what+": mark the page", chromedp.Evaluate[chromedp.Void](`window.__before = true`))
	b.do(what, act)
	// The page goes away under the question while it navigates: ask again until the new
	// one answers.
	testkit.WaitForWithin(b.t, what+": the next page", 15*time.Second, func() bool {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`!window.__before && document.readyState === 'complete'`))
		return err == nil && ok
	})
}

// eval runs js in the page and decodes its result into a T.
func evalAs[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// text is what a person sees of the page.
func (b *browser) text() string { return evalAs[string](b, `document.body.innerText`) }

// flash is the result box: "" when there is none.
func (b *browser) flash() string {
	return evalAs[string](b, `(document.getElementById('flash') || {innerText: ''}).innerText`)
}

func (b *browser) wantFlash(what, want string) {
	b.t.Helper()
	if got := b.flash(); !strings.Contains(got, want) {
		b.t.Fatalf("%s: the page says %q, want %q", what, got, want)
	}
}

// focused is the id of the element with the keyboard.
func (b *browser) focused() string {
	return evalAs[string](b, `document.activeElement ? document.activeElement.id : ''`)
}

// typeKeys types into the element that has the keyboard, as a scanner or a person does.
func (b *browser) typeKeys(keys string) chromedp.Action[chromedp.Void] {
	return chromedp.KeyEvent(keys)
}

func (b *browser) signIn(name string) {
	b.t.Helper()
	b.navigate("/login")
	b.do("type the account", chromedp.SendKeys(chromedp.ID("name"), name), chromedp.SendKeys(chromedp.ID("password"), lethetest.Password))
	b.submit("sign in as "+name, chromedp.Click(chromedp.ID("signin")))
	if loc := evalAs[string](b, `location.pathname`); loc == "/login" {
		b.t.Fatalf("sign in as %s: still on the sign-in page: %s", name, b.text())
	}
}

func (b *browser) signOut() {
	b.t.Helper()
	b.submit("sign out", chromedp.Click(chromedp.CSS("form.who button")))
	if loc := evalAs[string](b, `location.pathname`); loc != "/login" {
		b.t.Fatalf("after signing out the browser is at %s, want /login", loc)
	}
}

// screenshot keeps a picture of the page: in the test's directory always, and in
// LETHE_SCREENSHOT_DIR when set (the README's pictures are made so).
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	dirs := []string{b.t.TempDir()}
	if d := os.Getenv("LETHE_SCREENSHOT_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, name), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// dom is the whole live DOM, attributes included, and the visible text.
func (b *browser) dom() string {
	return evalAs[string](b, `document.documentElement.outerHTML + '\n' + document.body.innerText + '\n' + document.title + '\n' + location.href`)
}

// axProblems lists the form controls, buttons, links and images of the page that have no
// accessible name in Chromium's accessibility tree.
func (b *browser) axProblems() []string {
	b.t.Helper()
	tree, err := chromedp.Call(b.ctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		b.t.Fatalf("accessibility tree: %v", err)
	}
	named := map[string]bool{"textbox": true, "combobox": true, "checkbox": true, "button": true, "link": true,
		"image": true, "img": true, "searchbox": true, "spinbutton": true, "progressbar": true, "radio": true}
	var problems []string
	for _, n := range tree.Nodes {
		if n.Ignored || n.Role == nil {
			continue
		}
		var role string
		_ = json.Unmarshal(n.Role.Value, &role)
		if !named[role] {
			continue
		}
		var name string
		if n.Name != nil {
			_ = json.Unmarshal(n.Name.Value, &name)
		}
		if strings.TrimSpace(name) == "" {
			problems = append(problems, role+" without a name")
		}
	}
	return problems
}

// pressEnter is the Enter key, as a barcode scanner ends a scan.
const pressEnter = kb.Enter
