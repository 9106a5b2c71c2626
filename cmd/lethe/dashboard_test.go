package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/imagineif/lethe/internal/lethetest"
	"github.com/imagineif/lethe/internal/testkit"
	"github.com/imagineif/lethe/policy"
)

// dashboardView is what the dashboard shows, read from the page by dashboardJS.
type dashboardView struct {
	Cards       map[string]string `json:"cards"` // card label → the number it shows
	Bars        []dashboardBar    `json:"bars"`
	Status      string            `json:"status"`
	StatusClass string            `json:"statusClass"`
	Text        string            `json:"text"` // what a person sees: body.innerText
	HTML        string            `json:"html"` // the whole live DOM, attributes included
}

type dashboardBar struct {
	Day     string  `json:"day"`
	Measure string  `json:"measure"`
	Height  float64 `json:"height"`
}

// dashboardJS reads the page. With ready set it returns null until the cards and a bar of
// each measure are drawn, so Poll waits for them.
const dashboardJS = `(ready) => {
  const cards = {};
  for (const c of document.querySelectorAll('#cards .card')) {
    cards[c.querySelector('span').textContent] = c.querySelector('b').textContent;
  }
  const bars = [...document.querySelectorAll('#chart rect[data-measure]')].map(r => ({
    day: r.dataset.day, measure: r.dataset.measure, height: Number(r.getAttribute('height')),
  }));
  const has = m => bars.some(b => b.measure === m);
  if (ready && !('expunged' in cards && has('checkouts') && has('returns'))) return null;
  const st = document.getElementById('status');
  return {cards, bars, status: st.textContent, statusClass: st.className,
    text: document.body.innerText, html: document.documentElement.outerHTML};
}`

// chromiumPath is the browser the dashboard test drives: LETHE_CHROMIUM or Debian's.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("LETHE_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no Chromium for the dashboard test: %v\n"+
			"install it (Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y chromium)\n"+
			"or set LETHE_CHROMIUM to a Chrome or Chromium binary", err)
	}
	return path
}

// TestDashboard loads the staff dashboard in headless Chromium after a day of
// circulation and checks the cards, the chart, and that no patron data reaches the page.
func TestDashboard(t *testing.T) {
	t.Parallel()
	chromium := chromiumPath(t)

	h := lethetest.New(t)
	patrons := []struct{ card, name, birth string }{
		{"21000000000101", "Ada Reader", "1980-05-17"},
		{"21000000000102", "Grace Borrower", "1975-11-02"},
	}
	for _, p := range patrons {
		h.Register(p.card, p.name, p.birth)
	}
	// Six of each: days with fewer than 5 checkouts or returns are suppressed.
	barcodes := []string{"D1", "D2", "D3", "D4", "D5", "D6"}
	for i, b := range barcodes {
		h.Catalog(b, 1500)
		if r := h.Checkout(patrons[i%len(patrons)].card, b); !r.OK {
			t.Fatalf("checkout %s = %+v, want ok", b, r.Error)
		}
	}
	for _, b := range barcodes {
		h.Checkin(b)
	}
	h.ExpungeAll()

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	browserLog := &testkit.SyncBuffer{}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1024, 768),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(browserLog),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chromium output:\n%s", browserLog)
		}
	})

	// Collect the console from the start: an exception or a CSP violation means the page
	// is broken even if it drew something.
	cctx, stopConsole := context.WithCancel(bctx)
	messages := chromedp.Console(cctx)
	var (
		mu      sync.Mutex
		console []chromedp.ConsoleMessage
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			mu.Lock()
			console = append(console, m)
			mu.Unlock()
		}
	}()

	// An auditor signs in: the dashboard is anonymous data, which is all auditors may read.
	h.Account("reader", policy.Auditor)
	if err := chromedp.Do(bctx, chromedp.Navigate(h.S.HTTPURL+"/"), chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.SendKeys(chromedp.ID("name"), "reader"), chromedp.SendKeys(chromedp.ID("password"), lethetest.Password),
		chromedp.Click(chromedp.ID("signin"))); err != nil {
		t.Fatalf("sign in on the dashboard: %v", err)
	}
	view, waitErr := chromedp.Run(bctx, chromedp.PollFunction[dashboardView](dashboardJS,
		chromedp.WithPollingArgs(true), chromedp.WithPollingTimeout(10*time.Second)))

	// The screenshot comes before any verdict, so a broken page can be looked at.
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "dashboard.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("LETHE_SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "dashboard.png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}

	if waitErr != nil {
		now, err := chromedp.Run(bctx, chromedp.PollFunction[dashboardView](dashboardJS,
			chromedp.WithPollingArgs(false), chromedp.WithPollingTimeout(time.Second)))
		if err != nil {
			t.Fatalf("waiting for cards and bars: %v; reading the page: %v", waitErr, err)
		}
		t.Fatalf("waiting for cards and bars: %v; the page shows cards %v, bars %+v, status %q",
			waitErr, now.Cards, now.Bars, now.Status)
	}

	if got := view.Cards["on loan"]; got != "0" {
		t.Errorf(`card "on loan" = %q, want "0"`, got)
	}
	if got := view.Cards["expunged"]; got != "6" {
		t.Errorf(`card "expunged" = %q, want "6"`, got)
	}
	if got := view.Cards["items"]; got != "6" {
		t.Errorf(`card "items" = %q, want "6"`, got)
	}
	today := h.Clock.Now().Format(time.DateOnly)
	measures := map[string]int{}
	for _, b := range view.Bars {
		measures[b.Measure]++
		if b.Day != today || b.Height <= 0 {
			t.Errorf("bar %+v, want day %s and a positive height", b, today)
		}
	}
	if measures["checkouts"] != 1 || measures["returns"] != 1 {
		t.Errorf("bars per measure = %v, want one checkouts and one returns bar", measures)
	}
	if view.StatusClass == "err" || !strings.HasPrefix(view.Status, "stream position ") {
		t.Errorf("status line = %q (class %q), want the stream position", view.Status, view.StatusClass)
	}

	// Privacy: the dashboard shows counts only.
	for _, p := range patrons {
		email := strings.ToLower(strings.ReplaceAll(p.name, " ", ".")) + "@example.org"
		for _, secret := range []string{p.card, p.name, email, p.birth} {
			if strings.Contains(view.Text, secret) || strings.Contains(view.HTML, secret) {
				t.Errorf("dashboard shows patron data %q", secret)
			}
		}
	}

	stopConsole()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for _, m := range console {
		// The browser asks for /favicon.ico on its own and Lethe has none; the page
		// cannot point it elsewhere, as CSP blocks a data: icon.
		if m.Source == "network" && strings.HasSuffix(m.URL, "/favicon.ico") {
			continue
		}
		// Before signing in, the page asks whether there is a session and is told 401.
		if m.Source == "network" && strings.HasSuffix(m.URL, "/api/session") && strings.Contains(m.Text, "401") {
			continue
		}
		if m.IsException() || m.Type == chromedp.ConsoleError {
			t.Errorf("dashboard console: %s (source %q, %s:%d)", m, m.Source, m.URL, m.Line+1)
		} else {
			t.Logf("dashboard console: %s", m)
		}
	}
}
