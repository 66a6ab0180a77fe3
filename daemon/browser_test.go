package daemon

import (
	"bytes"
	"context"
	"html"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromiumPath is where Debian's chromium package installs the browser.
const chromiumPath = "/usr/bin/chromium"

// TestStatusPageInBrowser runs the daemon against the Dovecot pair with the
// status endpoint protected by a token, checks the token, and renders the
// status page in headless Chromium the way an admin opens it.
func TestStatusPageInBrowser(t *testing.T) {
	const token = "s3cret-T0ken"
	emails := []string{"alice@example.com", "bob@example.com"}
	p := newPair(t, emails...)
	seed(t, p.src.Dial(t, emails[0]), "INBOX", 0, 3, 2000)
	seed(t, p.src.Dial(t, emails[1]), "INBOX", 0, 2, 2000)
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
	d, _ := startDaemon(t, o, time.Minute)
	waitFor(t, "both mailboxes synced", 20*time.Second, func() bool {
		st, err := d.Status("")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range st.Mailboxes {
			if m.State == StateSynced {
				n++
			}
		}
		return n == len(emails)
	})
	base := "http://" + o.HTTP

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
			{"token in the wrong scheme", "/", func(r *http.Request) { r.Header.Set("Authorization", "Token "+token) }, http.StatusUnauthorized},
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
			if resp.StatusCode != c.want {
				t.Errorf("%s: GET %s = %d, want %d\n%.500s", c.name, c.path, resp.StatusCode, c.want, body)
				continue
			}
			if c.want == http.StatusUnauthorized {
				if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic ") {
					t.Errorf("%s: WWW-Authenticate = %q: a browser would not ask for the token", c.name, got)
				}
				if bytes.Contains(body, []byte("alice")) || bytes.Contains(body, []byte(token)) {
					t.Errorf("%s: the 401 tells too much:\n%s", c.name, body)
				}
			} else if c.path != "/metrics" && !bytes.Contains(body, []byte(emails[0])) {
				t.Errorf("%s: GET %s lacks %s:\n%.2000s", c.name, c.path, emails[0], body)
			}
		}
	})

	t.Run("chromium", func(t *testing.T) {
		if _, err := os.Stat(chromiumPath); err != nil {
			msg := "headless Chromium (" + chromiumPath + ") is not installed: apt-get install chromium, or run scripts/test.sh, which installs it"
			if os.Getenv("CI") != "" {
				t.Fatal(msg + " (CI is set: the status page must be tested; run the tests with scripts/test.sh)")
			}
			t.Skip(msg)
		}
		// The admin opens the page with the token as basic-auth password.
		url := "http://admin:" + token + "@" + o.HTTP + "/"
		dom := chromium(t, "--dump-dom", url)
		if strings.Contains(dom, token) {
			t.Errorf("the page shows the token")
		}
		checkStatusDOM(t, dom, emails)
		t.Logf("rendered DOM:\n%s", dom)

		shot := filepath.Join(t.ArtifactDir(), "status.png")
		chromium(t, "--screenshot="+shot, "--window-size=1200,600", "--hide-scrollbars", url)
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
			t.Errorf("screenshot is %v, want 1200x600", b)
		}
		// The synced badges are drawn in their green (CSS .synced).
		green := 0
		b := img.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				if r>>8 == 0xd8 && g>>8 == 0xf3 && bl>>8 == 0xdc {
					green++
				}
			}
		}
		if green < 2*100 {
			t.Errorf("screenshot %s: %d pixels of the synced badge's green, want two badges' worth", shot, green)
		}
		t.Logf("screenshot: %s (keep it with go test -artifacts)", shot)
	})
}

// chromium runs headless Chromium with args and returns its standard output.
func chromium(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromiumPath, append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-quic", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-crash-reporter",
		"--user-data-dir=" + t.TempDir(),
	}, args...)...)
	// Chromium's helper processes may hold the pipes a little longer.
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, lastLines(stderr.String(), 20))
	}
	t.Logf("chromium %s: %s", args[0], time.Since(start).Round(time.Millisecond))
	return stdout.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var (
	tagRE   = regexp.MustCompile(`<[^>]*>`)
	spaceRE = regexp.MustCompile(`\s+`)
	rowRE   = regexp.MustCompile(`(?s)<tr>(.*?)</tr>`)
	badgeRE = regexp.MustCompile(`<span class="state ([a-z-]+)">([^<]*)</span>`)
)

// text is what a person reads in a piece of serialized DOM.
func text(dom string) string {
	return strings.TrimSpace(spaceRE.ReplaceAllString(html.UnescapeString(tagRE.ReplaceAllString(dom, " ")), " "))
}

// element returns the serialized element whose start tag contains attr.
func element(t *testing.T, dom, tag, attr string) string {
	t.Helper()
	i := strings.Index(dom, attr)
	if i < 0 {
		t.Fatalf("the page has no %s element with %s:\n%s", tag, attr, dom)
	}
	if i = strings.LastIndex(dom[:i+len(attr)], "<"+tag); i >= 0 {
		if j := strings.Index(dom[i:], "</"+tag+">"); j >= 0 {
			return dom[i : i+j+len("</"+tag+">")]
		}
	}
	t.Fatalf("cannot find the %s element with %s:\n%s", tag, attr, dom)
	return ""
}

// checkStatusDOM checks the status page as Chromium rendered it: title,
// one row per mailbox with its state badge, the totals, self-refresh.
func checkStatusDOM(t *testing.T, dom string, emails []string) {
	t.Helper()
	if !strings.Contains(dom, "<title>mailferry status</title>") {
		t.Errorf("no title <title>mailferry status</title>:\n%.1000s", dom)
	}

	tbody := element(t, element(t, dom, "table", `id="mailboxes"`), "tbody", "<tbody")
	rows := rowRE.FindAllStringSubmatch(tbody, -1)
	if len(rows) != len(emails) {
		t.Fatalf("%d mailbox rows, want %d:\n%s", len(rows), len(emails), tbody)
	}
	for i, row := range rows {
		cells := text(row[1])
		if !strings.HasPrefix(cells, emails[i]+" synced ") {
			t.Errorf("row %d reads %q, want %s, synced", i+1, cells, emails[i])
		}
		badge := badgeRE.FindStringSubmatch(row[1])
		if badge == nil || badge[1] != "synced" || badge[2] != "synced" {
			t.Errorf("row %d has no synced badge: %s", i+1, row[1])
		}
	}

	totals := text(element(t, dom, "div", `id="totals"`))
	for _, want := range []string{"2 mailboxes", "· 2 synced", "· 5 messages (", ") copied", "· 0 skipped"} {
		if !strings.Contains(totals, want) {
			t.Errorf("totals read %q, lacking %q", totals, want)
		}
	}

	if !regexp.MustCompile(`<meta http-equiv="refresh" content="[1-9][0-9]*">`).MatchString(dom) {
		t.Errorf("the page does not refresh itself (no meta refresh):\n%.1000s", dom)
	}
}
