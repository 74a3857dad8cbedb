package api_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/httpjson"
	"github.com/home-console/client-manager/internal/sessions"
	"github.com/home-console/client-manager/internal/sessions/sessionstest"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// diskAgent is a fake agent with one file root held in memory: a
// pending upload per path, resumable; downloads from an offset.
type diskAgent struct {
	mu      sync.Mutex
	files   map[string][]byte
	pending map[string][]byte
	hold    chan struct{} // if set, uploads wait for it after accepting
}

func newDiskAgent() *diskAgent {
	return &diskAgent{files: map[string][]byte{}, pending: map[string][]byte{}}
}

func (d *diskAgent) agent() *sessionstest.Agent {
	return &sessionstest.Agent{Features: []string{agentproto.FeatureFiles}, Handle: d.handle}
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (d *diskAgent) handle(s *sessionstest.AgentStream) {
	o := s.Open.File
	switch s.Open.Kind {
	case agentproto.StreamFileWrite:
		d.write(s, o)
	case agentproto.StreamFileRead:
		d.mu.Lock()
		data, ok := d.files[o.Path]
		d.mu.Unlock()
		if !ok {
			s.Refuse(agentproto.StreamClose{Code: "file_not_found", Message: "no such file"})
			return
		}
		s.Accept(agentproto.StreamOpened{File: &agentproto.FileInfo{Path: o.Path, Name: "f.bin", Type: "file", Size: int64(len(data))}})
		if o.Offset < int64(len(data)) {
			_, _ = s.Write(data[o.Offset:])
		}
		s.CloseWrite(agentproto.StreamClose{SHA256: digest(data)})
	default:
		s.Refuse(agentproto.StreamClose{Code: "unknown_kind"})
	}
}

// file returns a committed file and the length of a pending upload.
func (d *diskAgent) file(path string) ([]byte, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.files[path], len(d.pending[path])
}

func (d *diskAgent) write(s *sessionstest.AgentStream, o *agentproto.FileOpen) {
	d.mu.Lock()
	defer d.mu.Unlock()
	have := int64(len(d.pending[o.Path]))
	if o.Offset != have {
		s.Refuse(agentproto.StreamClose{Code: agentproto.StreamErrorOffsetMismatch, Offset: &have})
		return
	}
	s.Accept(agentproto.StreamOpened{})
	if d.hold != nil {
		<-d.hold
	}
	data, err := io.ReadAll(s) // one upload at a time: the mutex is file_busy
	d.pending[o.Path] = append(d.pending[o.Path], data...)
	if err != nil {
		return // kept for a resume
	}
	content := d.pending[o.Path]
	if int64(len(content)) != o.Size {
		return
	}
	delete(d.pending, o.Path)
	if o.SHA256 != "" && digest(content) != o.SHA256 {
		s.Abort(agentproto.StreamClose{Code: "digest_mismatch", SHA256: digest(content)})
		return
	}
	d.files[o.Path] = content
	s.CloseWrite(agentproto.StreamClose{Bytes: o.Size, SHA256: digest(content)})
}

// put sends an upload; headers are name, value pairs; a negative length
// sends the body chunked.
func (sf *sessionFixture) put(t *testing.T, path string, body []byte, length int64, headers ...string) (*http.Response, errorAnswer) {
	t.Helper()
	var r io.Reader = bytes.NewReader(body)
	if length < 0 {
		r = io.MultiReader(r) // hides the length: chunked
	}
	req, _ := http.NewRequest("PUT", sf.base+path, r)
	if length >= 0 {
		req.ContentLength = length
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e errorAnswer
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &e)
	return res, e
}

// cutUpload sends an upload of total bytes whose connection ends after
// part, and waits until the agent kept what it got.
func (sf *sessionFixture) cutUpload(t *testing.T, path string, part []byte, total int) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(sf.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", path, sf.admin, total)
	_, _ = conn.Write(part)
	time.Sleep(50 * time.Millisecond)
	_ = conn.Close()
}

// errorAnswer is an error body with a transfer's fields.
type errorAnswer struct {
	Error struct {
		httpjson.ErrorDetail
		Offset *int64 `json:"offset"`
		SHA256 string `json:"sha256"`
	} `json:"error"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func TestUploadResumeAndDownload(t *testing.T) {
	sf := newSessionFixture(t, sessions.Config{})
	id := sf.ids["files"]
	disk := newDiskAgent()
	sf.streams.Set(id, disk.agent())
	content := bytes.Repeat([]byte("abcdefghij"), 1000)
	url := "/api/clients/" + id + "/files?path=/srv/f.bin&mode=0640"
	auth := bearer(sf.admin)

	// 4000 bytes of 10000 arrive, then the client's connection breaks.
	sf.cutUpload(t, url, content[:4000], 10000)
	for _, n := disk.file("/srv/f.bin"); n != 4000; _, n = disk.file("/srv/f.bin") {
		time.Sleep(5 * time.Millisecond)
	}
	// The probe says where to continue.
	res, e := sf.put(t, url, nil, 0, append(auth, "Content-Range", "bytes */10000")...)
	if res.StatusCode != 409 || e.Error.Code != "offset_mismatch" || res.Header.Get("Upload-Offset") != "4000" || e.Error.Offset == nil || *e.Error.Offset != 4000 {
		t.Fatalf("probe = %d %+v Upload-Offset %q", res.StatusCode, e, res.Header.Get("Upload-Offset"))
	}
	res, e = sf.put(t, url, content[4000:], 6000, append(auth, "Content-Range", "bytes 4000-9999/10000", "X-Content-SHA256", digest(content))...)
	if res.StatusCode != 201 || e.SHA256 != digest(content) || e.Size != 10000 || res.Header.Get("X-Content-SHA256") != digest(content) {
		t.Fatalf("resume = %d %+v", res.StatusCode, e)
	}
	if got, _ := disk.file("/srv/f.bin"); !bytes.Equal(got, content) {
		t.Fatal("the agent's file differs")
	}

	get := sf.get(t, "/api/clients/"+id+"/files?path=/srv/f.bin", append(auth, "Range", "bytes=9990-")...)
	body, err := io.ReadAll(get.Body)
	if err != nil || get.StatusCode != 206 || string(body) != string(content[9990:]) || get.Header.Get("Content-Range") != "bytes 9990-9999/10000" {
		t.Fatalf("range download = %d %q %q %v", get.StatusCode, body, get.Header.Get("Content-Range"), err)
	}
	if get.Trailer.Get("X-Content-SHA256") != digest(content) {
		t.Fatalf("trailer %v", get.Trailer)
	}
	get = sf.get(t, "/api/clients/"+id+"/files?path=/srv/f.bin", auth...)
	body, _ = io.ReadAll(get.Body)
	if get.StatusCode != 200 || !bytes.Equal(body, content) || get.Header.Get("X-File-Size") != "10000" {
		t.Fatalf("download = %d %d bytes", get.StatusCode, len(body))
	}
	get = sf.get(t, "/api/clients/"+id+"/files?path=/srv/f.bin", append(auth, "Range", "bytes=10000-")...)
	if get.StatusCode != 416 || get.Header.Get("Content-Range") != "bytes */10000" {
		t.Fatalf("range past the end = %d %q", get.StatusCode, get.Header.Get("Content-Range"))
	}
	sf.checkAudit(t, "PUT /api/clients/:id/files", `upload "/srv/f.bin" offset 4000 size 10000 bytes 6000 sha256 `+digest(content))
	sf.checkAudit(t, "GET /api/clients/:id/files", `download "/srv/f.bin" offset 9990 bytes 10 sha256 `+digest(content))
}

// filesFixture has, besides the fixture's agents, a disk agent with
// /srv/a at "files", and agents refusing with path_outside_roots
// (more[0]) and file_busy (more[1]), and one whose only transfer slot an
// upload holds (more[2]) until the test ends.
func filesFixture(t *testing.T) (sf *sessionFixture, more []string) {
	t.Helper()
	sf = newSessionFixture(t, sessions.Config{FilesMaxBytes: 1000, FilesMaxPerAgent: 1})
	disk := newDiskAgent()
	disk.files["/srv/a"] = []byte("hello")
	sf.streams.Set(sf.ids["files"], disk.agent())
	more = sf.addAgents(t, 3, map[string]string{"fleet": "y"})
	sf.streams.Set(more[0], refusingAgent(agentproto.FeatureFiles, "path_outside_roots"))
	sf.streams.Set(more[1], refusingAgent(agentproto.FeatureFiles, "file_busy"))
	held := newDiskAgent()
	held.hold = make(chan struct{})
	sf.streams.Set(more[2], held.agent())
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		sf.put(t, "/api/clients/"+more[2]+"/files?path=/x", []byte("x"), 1, bearer(sf.admin)...)
	}()
	for len(sf.streams.Opened()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	t.Cleanup(func() { close(held.hold); <-busy })
	return sf, more
}

func TestFilesBadInput(t *testing.T) {
	sf, more := filesFixture(t)
	files, plain, gone := sf.ids["files"], sf.ids["plain"], sf.ids["gone"]
	up := func(agent, query string) string { return "/api/clients/" + agent + "/files?" + query }
	wrong := strings.Repeat("0", 64)
	tests := []struct {
		name    string
		path    string
		body    string
		length  int64
		headers []string
		status  int
		code    string
	}{
		{"no length", up(files, "path=/srv/b"), "abc", -1, nil, 411, "length_required"},
		{"over the server's cap", up(files, "path=/srv/b"), "", 0, []string{"Content-Range", "bytes */5000"}, 413, "transfer_too_large"},
		{"offset mismatch", up(files, "path=/srv/b"), "bc", 2, []string{"Content-Range", "bytes 1-2/3"}, 409, "offset_mismatch"},
		{"digest mismatch", up(files, "path=/srv/b"), "abc", 3, []string{"X-Content-SHA256", wrong}, 422, "digest_mismatch"},
		{"bad digest header", up(files, "path=/srv/b"), "abc", 3, []string{"X-Content-SHA256", "xyz"}, 400, "invalid_header"},
		{"bad content range", up(files, "path=/srv/b"), "abc", 3, []string{"Content-Range", "bytes 0-9/3"}, 400, "invalid_header"},
		{"content range not bytes", up(files, "path=/srv/b"), "abc", 3, []string{"Content-Range", "items 0-2/3"}, 400, "invalid_header"},
		{"no path", up(files, ""), "abc", 3, nil, 400, "invalid_query"},
		{"relative path", up(files, "path=srv/b"), "abc", 3, nil, 400, "invalid_query"},
		{"bad mode", up(files, "path=/srv/b&mode=999"), "abc", 3, nil, 400, "invalid_query"},
		{"unknown param", up(files, "path=/srv/b&owner=root"), "abc", 3, nil, 400, "invalid_query"},
		{"outside roots", up(more[0], "path=/etc/passwd"), "abc", 3, nil, 403, "path_outside_roots"},
		{"busy", up(more[1], "path=/srv/b"), "abc", 3, nil, 409, "file_busy"},
		{"transfer limit", up(more[2], "path=/srv/c"), "abc", 3, nil, 429, "transfer_limit"},
		{"no files feature", up(plain, "path=/srv/b"), "abc", 3, nil, 409, "files_not_allowed"},
		{"offline", up(gone, "path=/srv/b"), "abc", 3, nil, 409, "client_offline"},
		{"unknown agent", up("agt_nope", "path=/srv/b"), "abc", 3, nil, 404, "not_found"},
		{"operator role", up(files, "path=/srv/b"), "abc", 3, bearer(sf.op), 403, "forbidden"},
		{"no token", up(files, "path=/srv/b"), "abc", 3, []string{"Authorization", "Bearer nope"}, 401, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := tt.headers
			if len(headers) == 0 || headers[0] != "Authorization" {
				headers = append(bearer(sf.admin), headers...)
			}
			res, e := sf.put(t, tt.path, []byte(tt.body), tt.length, headers...)
			if res.StatusCode != tt.status || e.Error.Code != tt.code {
				t.Fatalf("PUT %s = %d %s (%s), want %d %s", tt.path, res.StatusCode, e.Error.Code, e.Error.Message, tt.status, tt.code)
			}
			if tt.code == "offset_mismatch" && (res.Header.Get("Upload-Offset") != "0" || e.Error.Offset == nil) {
				t.Fatalf("offset mismatch without the offset: %q %+v", res.Header.Get("Upload-Offset"), e)
			}
			if tt.code == "digest_mismatch" && e.Error.SHA256 != digest([]byte("abc")) {
				t.Fatalf("digest mismatch without the actual digest: %+v", e)
			}
		})
	}
}

func TestFileReadsBadInput(t *testing.T) {
	sf, more := filesFixture(t)
	files, plain := sf.ids["files"], sf.ids["plain"]
	up := func(agent, query string) string { return "/api/clients/" + agent + "/files?" + query }
	for _, tt := range []struct {
		path   string
		status int
		code   string
	}{
		{up(files, "path=/srv/missing"), 404, "file_not_found"},
		{up(files, "path=/srv/a&x=1"), 400, "invalid_query"},
		{"/api/clients/" + files + "/files/stat?path=rel", 400, "invalid_query"},
		{"/api/clients/" + files + "/files/list", 400, "invalid_query"},
		{"/api/clients/" + plain + "/files/list?path=/srv", 409, "files_not_allowed"},
		{up(more[0], "path=/etc/shadow"), 403, "path_outside_roots"},
		{up(more[2], "path=/x"), 429, "transfer_limit"},
		{up(files, "path=/srv/a"), 200, ""},
	} {
		if status, code := sf.call(t, "GET", tt.path, "", nil, bearer(sf.admin)...); status != tt.status || code != tt.code {
			t.Errorf("GET %s = %d %s, want %d %s", tt.path, status, code, tt.status, tt.code)
		}
	}
}

// TestDownloadBrokenOff: an agent that disconnects midway leaves the
// client an incomplete body (an error, not a short file) and no trailer.
func TestDownloadBrokenOff(t *testing.T) {
	sf := newSessionFixture(t, sessions.Config{})
	id := sf.ids["files"]
	sf.streams.Set(id, &sessionstest.Agent{Features: []string{agentproto.FeatureFiles}, Handle: func(s *sessionstest.AgentStream) {
		s.Accept(agentproto.StreamOpened{File: &agentproto.FileInfo{Path: "/f", Name: "f", Size: 1 << 20}})
		_, _ = s.Write(make([]byte, 1000))
		s.Abort(agentproto.StreamClose{Code: agentproto.StreamErrorDisconnected})
	}})
	res := sf.get(t, "/api/clients/"+id+"/files?path=/f", bearer(sf.admin)...)
	body, err := io.ReadAll(res.Body)
	if res.StatusCode != 200 || err == nil || len(body) != 1000 || res.Trailer.Get("X-Content-SHA256") != "" {
		t.Fatalf("broken-off download: %d, %d bytes, %v, trailer %v", res.StatusCode, len(body), err, res.Trailer)
	}
	sf.checkAudit(t, "GET /api/clients/:id/files", "interrupted: agent_disconnected")
}
