package strictjson

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// benchBodies are REST-sized inputs: a command (~100 B) and a batch of
// 100 ids (~3 KiB).
var benchBodies = map[string]string{
	"command": `{"command":"uname","args":["-a","-r"],"labels":{"role":"web"},"timeout":1.5,"uses":3,"enabled":true}`,
	"batch":   `{"command":"uptime","args":[` + benchIDs(100) + `],"labels":{"role":"web","rack":"3"}}`,
}

func benchIDs(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Quote("agt_" + strings.Repeat("0", 20) + strconv.Itoa(1000+i))
	}
	return strings.Join(ids, ",")
}

// BenchmarkDecode compares Decode with plain encoding/json on the same
// input.
func BenchmarkDecode(b *testing.B) {
	for name, body := range benchBodies {
		data := []byte(body)
		b.Run(name+"/strictjson", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var v target
				if err := Decode(data, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/encoding-json", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var v target
				if err := json.Unmarshal(data, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
