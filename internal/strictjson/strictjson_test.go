package strictjson

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// seconds is a field type with its own decoder, as the API's durations.
type seconds time.Duration

func (s *seconds) UnmarshalJSON(b []byte) error {
	var n float64
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("want a number of seconds")
	}
	if n < 0 {
		return errors.New("must not be negative")
	}
	*s = seconds(n * float64(time.Second))
	return nil
}

type restart struct {
	Policy      string `json:"policy"`
	MaxRestarts *int   `json:"max_restarts"`
}

// common is embedded, as the API embeds a command in a batch.
type common struct {
	Command string   `json:"command"`
	Args    []string `json:"args"`
}

type target struct {
	common
	Labels  map[string]string `json:"labels"`
	Restart *restart          `json:"restart"`
	Timeout seconds           `json:"timeout"`
	Uses    int32             `json:"uses"`
	Port    uint16            `json:"port"`
	Ratio   float32           `json:"ratio"`
	Enabled *bool             `json:"enabled"`
	Extra   json.RawMessage   `json:"extra"`
	Counts  map[int8]int      `json:"counts"`
	Kind    string            `json:"kind"`
	Untag   string
	Skipped string `json:"-"`
}

// decodeTests are inputs for a target and what Decode makes of them.
var decodeTests = []struct {
	name, in string
	kind     Kind
	want     string // a part of the error message; "" for success
}{
	{"valid", `{"command":"uname","args":["-a"],"labels":{"k":"v"},"restart":{"policy":"always","max_restarts":3},` +
		`"timeout":1.5,"uses":7,"port":80,"ratio":0.5,"enabled":true,"extra":{"any":[1,{"x":null}]},"counts":{"-3":1},"Untag":"u"}`, 0, ""},
	{"nulls", `{"command":null,"args":null,"restart":null,"timeout":null,"enabled":null}`, 0, ""},
	{"whitespace around", " \n\t{\"command\":\"x\"}\r\n ", 0, ""},
	{"surrogate pair", `{"command":"\ud83d\ude00"}`, 0, ""},
	{"escaped backslash then u", `{"command":"\\ud800"}`, 0, ""},
	{"duplicate key", `{"command":"echo","command":"uname"}`, KindDuplicateKey, `duplicate key "command"`},
	{"duplicate key spelled with an escape", `{"command":"echo","comm\u0061nd":"uname"}`, KindDuplicateKey, `duplicate key "command"`},
	{"duplicate nested key", `{"restart":{"policy":"always","policy":"never"}}`, KindDuplicateKey, `duplicate key "policy" in restart`},
	{"duplicate map key", `{"labels":{"a.b":"1","a.b":"2"}}`, KindDuplicateKey, `duplicate key "a.b" in labels`},
	{"duplicate key in raw data", `{"extra":{"list":[{"k":1,"k":2}]}}`, KindDuplicateKey, `duplicate key "k" in extra.list[0]`},
	{"duplicate key in a decoder's value", `{"timeout":{"a":1,"a":2}}`, KindDuplicateKey, `duplicate key "a" in timeout`},
	{"duplicate among many keys", `{"labels":{` + manyKeys(40) + `,"k7":"again"}}`, KindDuplicateKey, `duplicate key "k7" in labels`},
	{"wrong case", `{"Command":"uname"}`, KindFieldCase, `unknown field "Command": field names are case-sensitive (did you mean "command"?)`},
	{"wrong case nested", `{"restart":{"POLICY":"never"}}`, KindFieldCase, `unknown field "POLICY" in restart: field names are case-sensitive (did you mean "policy"?)`},
	{"Kelvin sign folds to k", "{\"\u212aind\":\"x\"}", KindFieldCase, "unknown field \"\u212aind\": field names are case-sensitive (did you mean \"kind\"?)"},
	{"long s folds to s", `{"argſ":["x"]}`, KindFieldCase, `did you mean "args"?`},
	{"untagged field in wrong case", `{"untag":"u"}`, KindFieldCase, `did you mean "Untag"?`},
	{"skipped field", `{"Skipped":"x"}`, KindUnknownField, `unknown field "Skipped"`},
	{"unknown field", `{"command":"uname","shell":"rm -rf /"}`, KindUnknownField, `unknown field "shell"`},
	{"unknown nested field", `{"restart":{"retries":3}}`, KindUnknownField, `unknown field "retries" in restart`},
	{"invalid UTF-8 in a value", "{\"command\":\"echo\",\"args\":[\"ok\",\"\xff\xfe\"]}", KindInvalidUTF8, "invalid UTF-8 at byte offset 32 in args[1]"},
	{"invalid UTF-8 in a key", "{\"labels\":{\"k\xc3\":\"v\"}}", KindInvalidUTF8, "invalid UTF-8 at byte offset 13 in labels"},
	{"truncated UTF-8 sequence", "{\"command\":\"\xe2\x82\"}", KindInvalidUTF8, "invalid UTF-8 at byte offset 12 in command"},
	{"invalid UTF-8 in raw data", "{\"extra\":\"\xff\"}", KindInvalidUTF8, "invalid UTF-8 at byte offset 10 in extra"},
	{"invalid UTF-8 in a decoder's value", "{\"timeout\":\"\xff\"}", KindInvalidUTF8, "invalid UTF-8 at byte offset 12 in timeout"},
	{"lone high surrogate", `{"command":"\ud800x"}`, KindInvalidUTF8, `escape of a lone UTF-16 surrogate \ud800 at byte offset 12 in command`},
	{"lone low surrogate", `{"args":["\udfff"]}`, KindInvalidUTF8, `escape of a lone UTF-16 surrogate \udfff at byte offset 10 in args[0]`},
	{"high surrogate then a non-surrogate", `{"command":"\ud800\u0041"}`, KindInvalidUTF8, `lone UTF-16 surrogate \ud800`},
	{"int overflow", `{"uses":2147483648}`, KindType, "field uses: number 2147483648 is out of range (-2147483648 to 2147483647)"},
	{"int overflow nested", `{"restart":{"max_restarts":99999999999999999999}}`, KindType, "field restart.max_restarts: number 99999999999999999999 is out of range (-9223372036854775808 to 9223372036854775807)"},
	{"fraction for an int", `{"uses":1.5}`, KindType, "field uses: expected an integer, got 1.5"},
	{"exponent for an int", `{"uses":1e3}`, KindType, "field uses: expected an integer, got 1e3"},
	{"negative uint", `{"port":-1}`, KindType, "field port: number -1 is out of range (0 to 65535)"},
	{"uint overflow", `{"port":65536}`, KindType, "field port: number 65536 is out of range (0 to 65535)"},
	{"float overflow", `{"ratio":1e39}`, KindType, "field ratio: number 1e39 is out of range for a 32-bit float"},
	{"map key out of range", `{"counts":{"300":1}}`, KindType, `field counts.300: number 300 is out of range (-128 to 127)`},
	{"string for an int", `{"restart":{"max_restarts":"5"}}`, KindType, "field restart.max_restarts: expected an integer, got a string"},
	{"array for a string", `{"command":["uname"]}`, KindType, "field command: expected a string, got an array"},
	{"object for an array", `{"args":{}}`, KindType, "field args: expected an array, got an object"},
	{"string for a bool", `{"enabled":"yes"}`, KindType, "field enabled: expected true or false, got a string"},
	{"number in a string array", `{"args":["a",2]}`, KindType, "field args[1]: expected a string, got a number"},
	{"array for the object", `[{"command":"x"}]`, KindType, "expected an object, got an array"},
	{"decoder refuses", `{"timeout":-1}`, KindValue, "field timeout: must not be negative"},
	{"decoder refuses a type", `{"timeout":"10s"}`, KindValue, "field timeout: want a number of seconds"},
	{"trailing object", `{"command":"uname"} {"command":"rm"}`, KindTrailingData, "unexpected data after the JSON value at byte offset 20"},
	{"trailing garbage", `{"command":"uname"}x`, KindTrailingData, "unexpected data after the JSON value at byte offset 19"},
	{"truncated", `{"command":`, KindUnexpectedEnd, "unexpected end of JSON input"},
	{"syntax error", `{"command" "x"}`, KindSyntax, `invalid JSON at byte offset 11: invalid character '"' after object key`},
	{"bad literal", `{"enabled":tru}`, KindSyntax, "invalid JSON at byte offset 14: invalid character '}' in literal true (expecting 'e')"},
	{"trailing comma", `{"args":["a",]}`, KindSyntax, "invalid JSON at byte offset 13: invalid character ']' looking for beginning of value"},
	{"too deep", `{"extra":` + strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1) + `}`, KindTooDeep, "JSON nested deeper than 10000 levels"},
}

func TestDecode(t *testing.T) {
	for _, tt := range decodeTests {
		t.Run(tt.name, func(t *testing.T) {
			var got target
			err := Decode([]byte(tt.in), &got)
			if tt.want == "" {
				var want target
				if err != nil || json.Unmarshal([]byte(tt.in), &want) != nil || !reflect.DeepEqual(got, want) {
					t.Fatalf("Decode = %v, %+v; want nil and what encoding/json decodes", err, got)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Kind != tt.kind || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode = %v (%#v)\nwant kind %d %q", err, err, tt.kind, tt.want)
			}
			if !reflect.DeepEqual(got, target{}) {
				t.Fatalf("refused input changed the target: %+v", got)
			}
		})
	}
}

// manyKeys is n members "k0":"v" … of an object, beyond keySet's list.
func manyKeys(n int) string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = `"k` + strconv.Itoa(i) + `":"v"`
	}
	return strings.Join(keys, ",")
}
