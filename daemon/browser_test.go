package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chromiumPath is where Debian's chromium package installs the browser.
const chromiumPath = "/usr/bin/chromium"

// TestStatusPageInBrowser runs the daemon against the Dovecot pair with the
// status endpoint protected by a token, checks the token, then renders the
// status page in headless Chromium the way an admin opens it and checks
// what they see. With `go test -artifacts` the screenshot is kept.
func TestStatusPageInBrowser(t *testing.T) {
	const token = "s3cret-T0ken"
	p := newPair(t, "alice@example.com", "bob@example.com")
	seed(t, p.src.Dial(t, "alice@example.com"), "INBOX", 0, 3, 2000)
	seed(t, p.src.Dial(t, "bob@example.com"), "INBOX", 0, 2, 2000)
	// carol is on the list but has no mailbox on the servers: she fails.
	p.writeList(t, "alice@example.com", "bob@example.com", "carol@example.com")
	o := p.options()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.HTTP = ln.Addr().String()
	ln.Close()
	o.HTTPToken = token
	// A long interval: no second pass turns a mailbox back to syncing
	// while the browser looks.
	startDaemon(t, o, time.Minute)
	base := "http://" + o.HTTP
	// The status as the endpoint serves it (d.Status would race with Run
	// setting up the daemon).
	var st *FleetStatus
	waitFor(t, "alice and bob synced, carol failed", 20*time.Second, func() bool {
		req, _ := http.NewRequest("GET", base+"/api/status", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false // not listening yet
		}
		defer resp.Body.Close()
		st = nil
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/api/status: %d %v", resp.StatusCode, err)
		}
		var states []State
		for _, m := range st.Mailboxes {
			states = append(states, m.State)
		}
		return len(states) == 3 && states[0] == StateSynced && states[1] == StateSynced && states[2] == StateFailed
	})

	t.Run("token", func(t *testing.T) {
		bearer := func(tok string) func(*http.Request) {
			return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
		}
		for _, c := range []struct {
			name, path string
			auth       func(*http.Request)
			want       int
		}{
			{"page without token", "/", nil, http.StatusUnauthorized},
			{"api without token", "/api/status", nil, http.StatusUnauthorized},
			{"metrics without token", "/metrics", nil, http.StatusUnauthorized},
			{"wrong bearer token", "/", bearer("s3cret"), http.StatusUnauthorized},
			{"token in another scheme", "/", func(r *http.Request) { r.Header.Set("Authorization", "Token "+token) }, http.StatusUnauthorized},
			{"page with bearer token", "/", bearer(token), http.StatusOK},
			{"api with bearer token", "/api/status", bearer(token), http.StatusOK},
			{"metrics with bearer token", "/metrics", bearer(token), http.StatusOK},
			{"page with basic auth", "/", func(r *http.Request) { r.SetBasicAuth("admin", token) }, http.StatusOK},
		} {
			req, _ := http.NewRequest("GET", base+c.path, nil)
			if c.auth != nil {
				c.auth(req)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode != c.want:
				t.Errorf("%s: GET %s = %d, want %d\n%.500s", c.name, c.path, resp.StatusCode, c.want, body)
			case c.want == http.StatusUnauthorized:
				if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic ") {
					t.Errorf("%s: WWW-Authenticate = %q: a browser would not ask for the token", c.name, got)
				}
				if bytes.Contains(body, []byte("alice")) || bytes.Contains(body, []byte(token)) {
					t.Errorf("%s: the 401 tells too much:\n%s", c.name, body)
				}
			case c.path != "/metrics" && !bytes.Contains(body, []byte("alice@example.com")):
				t.Errorf("%s: GET %s lacks alice@example.com:\n%.2000s", c.name, c.path, body)
			}
		}
	})

	t.Run("chromium", func(t *testing.T) {
		if _, err := os.Stat(chromiumPath); err != nil {
			msg := "the status page test needs headless Chromium (" + chromiumPath + "): apt-get install chromium, or run scripts/test.sh, which installs it"
			if os.Getenv("CI") != "" {
				t.Fatal(msg + " (CI is set, so this is an error: run the tests with scripts/test.sh)")
			}
			t.Skip(msg)
		}
		// The admin opens the page with the token as basic-auth password.
		url := "http://admin:" + token + "@" + o.HTTP + "/"
		dom := chromium(t, "--dump-dom", url)
		if strings.Contains(dom, token) {
			t.Errorf("the page shows the token")
		}
		checkStatusDOM(t, dom, st)
		if t.Failed() {
			t.Logf("rendered DOM:\n%s", dom)
		}

		shot := filepath.Join(t.ArtifactDir(), "status.png")
		chromium(t, "--screenshot="+shot, "--window-size=1200,600", "--hide-scrollbars", url)
		t.Logf("screenshot: %s", shot)
		f, err := os.Open(shot)
		if err != nil {
			t.Fatalf("no screenshot: %v", err)
		}
		defer f.Close()
		img, err := png.Decode(f)
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 600 {
			t.Errorf("screenshot is %dx%d, want 1200x600", b.Dx(), b.Dy())
		}
		// The badges are drawn in their colours (CSS .synced and .failed);
		// a badge is some 55x18 pixels.
		for _, c := range []struct {
			what   string
			rgb    [3]uint32
			badges int
		}{{"synced", [3]uint32{0xd8, 0xf3, 0xdc}, 2}, {"failed", [3]uint32{0xfd, 0xe2, 0xe2}, 1}} {
			if n := countColour(img, c.rgb); n < c.badges*400 {
				t.Errorf("screenshot: %d pixels of the %s badge's colour #%02x%02x%02x, want %d badges' worth",
					n, c.what, c.rgb[0], c.rgb[1], c.rgb[2], c.badges)
			}
		}
	})
}

// countColour counts the pixels of img that are exactly rgb.
func countColour(img image.Image, rgb [3]uint32) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 == rgb[0] && g>>8 == rgb[1] && bl>>8 == rgb[2] {
				n++
			}
		}
	}
	return n
}

// chromium runs headless Chromium with args (the last one the URL) and
// returns its standard output.
func chromium(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromiumPath, append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-quic", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-crash-reporter",
		"--force-color-profile=srgb", "--user-data-dir=" + t.TempDir(),
	}, args...)...)
	// Chromium's helper processes may hold the pipes a little longer.
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", args[0], err, lastLines(stderr.String(), 20))
	}
	t.Logf("chromium %s: %s", args[0], time.Since(start).Round(time.Millisecond))
	return stdout.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var (
	tagRE     = regexp.MustCompile(`<[^>]*>`)
	spaceRE   = regexp.MustCompile(`\s+`)
	rowRE     = regexp.MustCompile(`(?s)<tr>(.*?)</tr>`)
	badgeRE   = regexp.MustCompile(`<span class="state ([a-z-]+)">([^<]*)</span>`)
	errRE     = regexp.MustCompile(`<div class="err">([^<]*)</div>`)
	refreshRE = regexp.MustCompile(`<meta http-equiv="refresh" content="([1-9][0-9]*)">`)
)

// text is what a person reads in a piece of serialized DOM.
func text(dom string) string {
	return strings.TrimSpace(spaceRE.ReplaceAllString(html.UnescapeString(tagRE.ReplaceAllString(dom, " ")), " "))
}

// element returns the serialized element whose start tag holds attr.
func element(t *testing.T, dom, tag, attr string) string {
	t.Helper()
	if i := strings.Index(dom, attr); i >= 0 {
		if i = strings.LastIndex(dom[:i+len(attr)], "<"+tag); i >= 0 {
			if j := strings.Index(dom[i:], "</"+tag+">"); j >= 0 {
				return dom[i : i+j+len("</"+tag+">")]
			}
		}
	}
	t.Fatalf("the page has no %s element with %s:\n%s", tag, attr, dom)
	return ""
}

// checkStatusDOM checks the status page as Chromium rendered it against
// st, the daemon's status: title, one row per mailbox with its state badge
// (and error), the totals line, and that the page refreshes itself.
func checkStatusDOM(t *testing.T, dom string, st *FleetStatus) {
	t.Helper()
	if !strings.Contains(dom, "<title>mailferry status</title>") {
		t.Errorf("the title is not <title>mailferry status</title>")
	}

	tbody := element(t, element(t, dom, "table", `id="mailboxes"`), "tbody", "<tbody")
	rows := rowRE.FindAllStringSubmatch(tbody, -1)
	if len(rows) != len(st.Mailboxes) {
		t.Fatalf("%d mailbox rows, want %d:\n%s", len(rows), len(st.Mailboxes), tbody)
	}
	for i, m := range st.Mailboxes {
		row := rows[i][1]
		// Mailbox, state (and error), folders, copied, skipped.
		want := text(strings.Join([]string{m.Email, string(m.State), m.LastError,
			strconv.Itoa(m.Folders), strconv.FormatInt(m.Copied, 10), strconv.FormatInt(m.Skipped, 10)}, " ")) + " "
		if got := text(row); !strings.HasPrefix(got, want) {
			t.Errorf("row %d reads %q, want it to begin %q", i+1, got, want)
		}
		if badge := badgeRE.FindStringSubmatch(row); badge == nil || badge[1] != string(m.State) || badge[2] != string(m.State) {
			t.Errorf("row %d has no %s badge: %s", i+1, m.State, row)
		}
		if e := errRE.FindStringSubmatch(row); (e != nil) != (m.LastError != "") {
			t.Errorf("row %d: error shown %v, want %v: %s", i+1, e != nil, m.LastError != "", row)
		}
	}

	totals := text(element(t, dom, "div", `id="totals"`))
	for _, want := range []string{"3 mailboxes", " · 1 failed", " · 2 synced", " · 5 messages (10.1 KiB) copied", " · 0 skipped"} {
		if !strings.Contains(totals, want) {
			t.Errorf("the totals read %q, lacking %q", totals, want)
		}
	}

	if m := refreshRE.FindStringSubmatch(dom); m == nil {
		t.Errorf("the page does not refresh itself: no meta refresh")
	} else if footer := "This page refreshes every " + m[1] + " seconds."; !strings.Contains(text(dom), footer) {
		t.Errorf("the page does not say %q", footer)
	}
}
