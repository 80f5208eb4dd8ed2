package plugchoice_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/exportbridge/exportbridge/plugchoice"
)

// exportJSON returns a realistic export object; ready ones carry a signed download URL.
func exportJSON(i int, status string) string {
	types := []string{"sessions", "transactions", "charge_points", "meter values", "invoices/monthly"}
	typ := types[i%len(types)]
	uuid := fmt.Sprintf("9b2f%04x-1c2d-4e5f-8a9b-%012x", i%0xffff, i)
	req := fmt.Sprintf("2026-11-28T10:%02d:%02d.000000Z", (i/60)%60, i%60)
	base := fmt.Sprintf(`"uuid":%q,"type":%q,"status":%q,"requested_at":%q,"subject":{"type":"site","id":%d,"label":"Site %c"}`,
		uuid, typ, status, req, i%5+1, 'A'+rune(i%5))
	switch status {
	case plugchoice.StatusReady:
		return fmt.Sprintf(`{%s,"filename":"%s-2026-11-28.csv","file_size":%d,"row_count":%d,"error_message":null,"completed_at":"2026-11-28T11:00:00.000000Z","failed_at":null,"download_url":"https://files.plugchoice.com/exports/%s/export.csv?expires=1795000000&signature=4f6c0b1f0e2d9a7c5b3e1d8f6a4c2e0b9d7f5a3c1e8b6d4f2a0c9e7b5d3f1a8c"}`,
			base, strings.ReplaceAll(typ, " ", "-"), 1000+i*37, 10+i, uuid)
	case plugchoice.StatusFailed:
		return fmt.Sprintf(`{%s,"filename":null,"file_size":null,"row_count":null,"error_message":"Export failed: query timed out","completed_at":null,"failed_at":"2026-11-28T11:00:00.000000Z","download_url":null}`, base)
	default:
		return fmt.Sprintf(`{%s,"filename":null,"file_size":null,"row_count":null,"error_message":null,"completed_at":null,"failed_at":null,"download_url":null}`, base)
	}
}

// pageJSON builds a page body of n exports (starting at index from) with the given next link.
func pageJSON(from, n int, next string) string {
	statuses := []string{"ready", "ready", "processing", "failed", "pending"}
	items := make([]string, n)
	for i := range items {
		items[i] = exportJSON(from+i, statuses[(from+i)%len(statuses)])
	}
	nextJSON := "null"
	if next != "" {
		nextJSON = fmt.Sprintf("%q", next)
	}
	return fmt.Sprintf(`{"data":[%s],"links":{"first":"https://app.plugchoice.com/api/v3/exports?page=1","last":null,"prev":null,"next":%s},"meta":{"current_page":1,"from":1,"path":"https://app.plugchoice.com/api/v3/exports","per_page":25,"to":%d}}`,
		strings.Join(items, ",\n  "), nextJSON, n)
}

func TestDecodePage(t *testing.T) {
	valid := pageJSON(0, 25, "https://app.plugchoice.com/api/v3/exports?page=2")
	tests := []struct {
		name    string
		body    string
		n       int    // exports expected when no error
		next    bool   // links.next set
		wantErr string // substring of the error; "" for success
	}{
		{name: "full page", body: valid, n: 25, next: true},
		{name: "last page", body: pageJSON(0, 3, ""), n: 3},
		{name: "empty list", body: `{"data":[],"links":{"next":null},"meta":{"current_page":1}}`, n: 0},
		{name: "only data", body: `{"data":[]}`, n: 0},
		{name: "white space around", body: " \n" + pageJSON(0, 2, "") + "\n\t ", n: 2},
		{name: "unknown fields kept", body: `{"data":[{"uuid":"u1","status":"ready","extra":{"a":[1,2]}}],"foo":[1,{"b":null}],"links":null,"meta":null}`, n: 1},
		{name: "unknown status", body: `{"data":[{"uuid":"u1","status":"archived"}]}`, n: 1},
		{name: "truncated", body: valid[:len(valid)/2], wantErr: "decode: unexpected end of JSON input"},
		{name: "truncated after key", body: `{"data"`, wantErr: "decode: unexpected end of JSON input"},
		{name: "truncated in array", body: `{"data":[`, wantErr: "decode: unexpected end of JSON input"},
		{name: "truncated before close", body: `{"data":[]`, wantErr: "decode: unexpected end of JSON input"},
		{name: "empty body", body: "", wantErr: "decode: empty body"},
		{name: "garbage", body: "<html>502 Bad Gateway</html>", wantErr: "decode: invalid character '<'"},
		{name: "trailing garbage", body: valid + "x", wantErr: "unexpected data after the page object"},
		{name: "two objects", body: `{"data":[]}{"data":[]}`, wantErr: "unexpected data after the page object"},
		{name: "data null", body: `{"data":null,"links":{"next":null}}`, wantErr: "data is null"},
		{name: "data missing", body: `{"links":{"next":null},"meta":{}}`, wantErr: `no "data" array`},
		{name: "data object", body: `{"data":{}}`, wantErr: "data is an object"},
		{name: "data string", body: `{"data":"x"}`, wantErr: "data is a string"},
		{name: "duplicate data", body: `{"data":[],"data":[]}`, wantErr: `duplicate key "data"`},
		{name: "array body", body: `[]`, wantErr: "expected a JSON object with a data array, got an array"},
		{name: "null body", body: `null`, wantErr: "got null"},
		{name: "export without uuid", body: `{"data":[{"uuid":"a","status":"ready"},{"status":"ready"}]}`, wantErr: "data[1]: export without uuid"},
		{name: "export without status", body: `{"data":[{"uuid":"a"}]}`, wantErr: "data[0]: export a: empty status"},
		{name: "null element", body: `{"data":[null]}`, wantErr: "data[0]: export without uuid"},
		{name: "string element", body: `{"data":["x"]}`, wantErr: "data[0]: expected an object, got string"},
		{name: "bad field type", body: `{"data":[{"uuid":"a","status":"ready","file_size":"big"}]}`, wantErr: "data[0].file_size: expected int64, got string"},
		{name: "bad meta", body: `{"data":[],"meta":{"current_page":"one"}}`, wantErr: "meta.current_page: expected int, got string"},
		{name: "bad links", body: `{"data":[],"links":{"next":5}}`, wantErr: "links.next: expected string, got number"},
		{name: "missing comma", body: `{"data":[{"uuid":"a","status":"ready"} {"uuid":"b","status":"ready"}]}`, wantErr: "decode: data[1]: expected comma after array element"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := plugchoice.DecodePage([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("no error, page with %d exports; want error containing %q", len(p.Data), tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q; want it to contain %q", err, tt.wantErr)
				}
				var de *plugchoice.DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("error %T is not a *DecodeError", err)
				}
				if got := plugchoice.Kind(err); got != "decode" {
					t.Fatalf("Kind = %q, want decode", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if len(p.Data) != tt.n {
				t.Fatalf("got %d exports, want %d", len(p.Data), tt.n)
			}
			if (p.Links.Next != nil) != tt.next {
				t.Fatalf("links.next = %v, want set=%v", p.Links.Next, tt.next)
			}
			for i, e := range p.Data {
				if e.UUID == "" || e.Status == "" {
					t.Fatalf("data[%d] lacks uuid or status: %+v", i, e)
				}
				// Raw is exactly the element: it decodes to the same export.
				var again plugchoice.Export
				if err := json.Unmarshal(e.Raw, &again); err != nil {
					t.Fatalf("data[%d].Raw %q does not decode: %v", i, e.Raw, err)
				}
				if again.UUID != e.UUID || again.Status != e.Status || again.RequestedAt != e.RequestedAt {
					t.Fatalf("data[%d].Raw decodes to %+v, want %+v", i, again, e)
				}
			}
		})
	}
}

func TestDecodePageFields(t *testing.T) {
	body := `{"data":[` + exportJSON(7, "ready") + `, {"uuid":"u2","status":"pending","requested_at":"2026-01-01T00:00:00Z","subject":null,"extra":1}],
	"links":{"first":"f","last":null,"prev":"p","next":null},
	"meta":{"current_page":2,"from":26,"path":"https://x/exports","per_page":25,"to":27}}`
	p, err := plugchoice.DecodePage([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	e := p.Data[0]
	if e.Type != "charge_points" || e.Status != "ready" || e.Filename == nil || *e.Filename != "charge_points-2026-11-28.csv" ||
		e.FileSize == nil || *e.FileSize != 1000+7*37 || e.RowCount == nil || *e.RowCount != 17 ||
		e.CompletedAt == nil || e.FailedAt != nil || e.ErrorMessage != nil || e.DownloadURL == nil ||
		e.Subject == nil || e.Subject.Type != "site" || e.Subject.ID != 3 || e.Subject.Label != "Site C" {
		t.Fatalf("fields not decoded: %+v", e)
	}
	if got, want := string(p.Data[1].Raw), `{"uuid":"u2","status":"pending","requested_at":"2026-01-01T00:00:00Z","subject":null,"extra":1}`; got != want {
		t.Fatalf("Raw = %s, want %s", got, want)
	}
	if p.Data[1].Subject != nil {
		t.Fatalf("null subject decoded as %+v", p.Data[1].Subject)
	}
	if p.Links.First == nil || *p.Links.First != "f" || p.Links.Last != nil || p.Links.Prev == nil || p.Links.Next != nil {
		t.Fatalf("links: %+v", p.Links)
	}
	if p.Meta.CurrentPage != 2 || p.Meta.PerPage != 25 || p.Meta.From == nil || *p.Meta.From != 26 ||
		p.Meta.To == nil || *p.Meta.To != 27 || p.Meta.Path != "https://x/exports" {
		t.Fatalf("meta: %+v", p.Meta)
	}
	// A forwarded export is exactly what the API sent.
	out, err := json.Marshal(p.Data[1])
	if err != nil || string(out) != string(p.Data[1].Raw) {
		t.Fatalf("Marshal = %s, %v; want the raw object", out, err)
	}
}

func TestDecodePageTruncatedIsUnexpectedEOF(t *testing.T) {
	body := pageJSON(0, 25, "")
	// Every proper prefix of a page is an error, never a short page.
	for n := 0; n < len(body); n += 7 {
		_, err := plugchoice.DecodePage([]byte(body[:n]))
		if err == nil {
			t.Fatalf("prefix of %d bytes decoded without error", n)
		}
		if n > 0 && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "invalid character") {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
}

func FuzzDecodePage(f *testing.F) {
	f.Add([]byte(pageJSON(0, 3, "https://app.plugchoice.com/api/v3/exports?page=2")))
	f.Add([]byte(`{"data":[]}`))
	f.Add([]byte(`{"data":null}`))
	f.Add([]byte(`{"data":[{"uuid":"a","status":"ready"},{"status":"x"}]} `))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := plugchoice.DecodePage(b)
		if err != nil {
			if p != nil {
				t.Fatalf("page returned with error %v", err)
			}
			return
		}
		for i, e := range p.Data {
			if e.UUID == "" || e.Status == "" {
				t.Fatalf("data[%d] without uuid or status: %+v", i, e)
			}
			if !json.Valid(e.Raw) {
				t.Fatalf("data[%d].Raw is not valid JSON: %q", i, e.Raw)
			}
		}
	})
}

func BenchmarkDecodePage(b *testing.B) {
	body := []byte(pageJSON(0, 25, "https://app.plugchoice.com/api/v3/exports?page=2"))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		p, err := plugchoice.DecodePage(body)
		if err != nil || len(p.Data) != 25 {
			b.Fatal(err)
		}
	}
}
