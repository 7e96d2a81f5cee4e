// tlogcheck checks an auditrail log through its C2SP tlog-tiles with Go's own
// golang.org/x/mod/sumdb/tlog and sumdb/note, which share the tiles' hash layout: the
// checkpoint's signature, each witness's cosignature/v1, every tile against the root,
// and every entry's inclusion.
//
// Usage: tlogcheck BASE LOG_VKEY [WITNESS_VKEY...]
// BASE is http(s)://host/logs/ORG (AUDITRAIL_TOKEN in the environment) or a directory.
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var base string

func fetch(path string) ([]byte, error) {
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		data, err := os.ReadFile(filepath.Join(base, path))
		if err != nil || !bytes.HasPrefix(data, []byte{0x1f, 0x8b, 0x08}) {
			return data, err
		}
		// A bucket's copy on disk: entry bundles are stored gzip'd (served with
		// Content-Encoding: gzip, which net/http would undo by itself).
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		return io.ReadAll(zr)
	}
	req, err := http.NewRequest("GET", strings.TrimRight(base, "/")+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	if t := os.Getenv("AUDITRAIL_TOKEN"); t != "" {
		req.Header.Set("Authorization", "Bearer "+t)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
	}
	return io.ReadAll(resp.Body)
}

// ourPath turns Go's tile path tile/8/L/N[.p/W] into C2SP's tile/L/N[.p/W].
func ourPath(t tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(t.Path(), "tile/8/")
}

type reader struct{}

func (reader) Height() int { return 8 }

func (reader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := fetch(ourPath(t))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (reader) SaveTiles([]tlog.Tile, [][]byte) {}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "tlogcheck: "+format+"\n", args...)
	os.Exit(1)
}

// cosigned checks a witness's Ed25519 cosignature/v1 on the note, as C2SP
// tlog-cosignature defines it, written here from the specification.
func cosigned(msg []byte, text string, vkey string) bool {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		fail("witness key %q malformed", vkey)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 33 || raw[0] != 0x04 {
		fail("witness key %q is not a cosignature/v1 key", vkey)
	}
	h := sha256.Sum256(append([]byte(parts[0]+"\n\x04"), raw[1:]...))
	for _, line := range strings.Split(string(msg), "\n") {
		prefix := "\u2014 " + parts[0] + " "
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, prefix))
		if err != nil || len(sig) != 76 || !bytes.Equal(sig[:4], h[:4]) {
			continue
		}
		ts := binary.BigEndian.Uint64(sig[4:12])
		signed := fmt.Sprintf("cosignature/v1\ntime %d\n%s", ts, text)
		if ed25519.Verify(ed25519.PublicKey(raw[1:]), []byte(signed), sig[12:]) {
			return true
		}
	}
	return false
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: tlogcheck BASE LOG_VKEY [WITNESS_VKEY...]")
	}
	base = os.Args[1]
	v, err := note.NewVerifier(os.Args[2])
	if err != nil {
		fail("log key: %v", err)
	}
	msg, err := fetch("checkpoint")
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint body too short")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != 32 {
		fail("checkpoint root malformed")
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	for _, w := range os.Args[3:] {
		if !cosigned(msg, n.Text, w) {
			fail("no valid cosignature by %s", strings.SplitN(w, "+", 2)[0])
		}
	}
	hr := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, reader{})
	th, err := tlog.TreeHash(size, hr)
	if err != nil {
		fail("tree hash from tiles: %v", err)
	}
	if th != root {
		fail("root from tiles %v is not the checkpoint's %v", th, root)
	}
	checked := int64(0)
	for b := int64(0); b*256 < size; b++ {
		w := size - b*256
		if w > 256 {
			w = 256
		}
		t := tlog.Tile{H: 8, L: 0, N: b, W: int(w)}
		p := "tile/entries/" + strings.TrimPrefix(t.Path(), "tile/8/0/")
		data, err := fetch(p)
		if err != nil {
			fail("%v", err)
		}
		for i := int64(0); i < w; i++ {
			if len(data) < 2 {
				fail("%s: truncated", p)
			}
			l := int(binary.BigEndian.Uint16(data[:2]))
			if len(data) < 2+l {
				fail("%s: truncated", p)
			}
			entry := data[2 : 2+l]
			data = data[2+l:]
			idx := b*256 + i
			proof, err := tlog.ProveRecord(size, idx, hr)
			if err != nil {
				fail("prove %d: %v", idx, err)
			}
			if err := tlog.CheckRecord(proof, size, root, idx, tlog.RecordHash(entry)); err != nil {
				fail("entry %d: %v", idx, err)
			}
			checked++
		}
		if len(data) != 0 {
			fail("%s: trailing bytes", p)
		}
	}
	fmt.Printf("ok: %d entries proven in a tree of %d with root %s\n", checked, size, lines[2])
}
