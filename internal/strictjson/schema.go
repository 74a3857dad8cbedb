package strictjson

import (
	"cmp"
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// shape is what the walk expects of a JSON value, from its Go target.
type shape int

const (
	// shapeAny accepts any JSON value (interface targets, json.RawMessage,
	// and types the walk does not model); only keys and strings are
	// checked.
	shapeAny shape = iota
	// shapeUnmarshaler is a type with its own UnmarshalJSON, which the
	// walk calls to check the value.
	shapeUnmarshaler
	shapeStruct
	shapeMap
	shapeSlice
	shapeBool
	shapeString
	shapeInt
	shapeUint
	shapeFloat
)

// schema is a Go type as the walk sees it.
type schema struct {
	shape shape
	// base is the Go type with pointers removed; pointer says there
	// were some (a JSON null then leaves the target nil).
	base    reflect.Type
	pointer bool
	// fields are a struct's fields by exact json name, and folded maps
	// each name folded as encoding/json folds it to the exact name.
	fields map[string]reflect.Type
	folded map[string]string
	// elem is a slice's, array's or map's element type; key a map's key
	// type.
	elem, key reflect.Type
}

var (
	schemas          sync.Map // reflect.Type → *schema
	unmarshalerType  = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler  = reflect.TypeFor[encoding.TextUnmarshaler]()
	rawMessageType   = reflect.TypeFor[json.RawMessage]()
	jsonNumberType   = reflect.TypeFor[json.Number]()
	emptyFields      = map[string]reflect.Type{}
	emptyFoldedNames = map[string]string{}
)

// schemaOf returns t's schema, built once per type. Element and field
// types are resolved when walked, so recursive types are fine.
func schemaOf(t reflect.Type) *schema {
	if s, ok := schemas.Load(t); ok {
		return s.(*schema)
	}
	s := buildSchema(t)
	schemas.Store(t, s)
	return s
}

func buildSchema(t reflect.Type) *schema {
	pointer := t.Kind() == reflect.Pointer
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s := &schema{base: t, pointer: pointer}
	switch {
	case t == rawMessageType:
		return s
	case reflect.PointerTo(t).Implements(unmarshalerType):
		s.shape = shapeUnmarshaler
		return s
	case reflect.PointerTo(t).Implements(textUnmarshaler), t == jsonNumberType:
		return s
	}
	s.shape = kindShapes[t.Kind()]
	if s.shape == shapeSlice && t.Elem().Kind() == reflect.Uint8 {
		s.shape = shapeAny // []byte: a base64 string or an array of numbers
	}
	switch s.shape {
	case shapeStruct:
		s.fields, s.folded = structFields(t)
	case shapeSlice:
		s.elem = t.Elem()
	case shapeMap:
		s.elem, s.key = t.Elem(), t.Key()
	}
	return s
}

// kindShapes maps the kinds the walk models; the others are shapeAny.
var kindShapes = map[reflect.Kind]shape{
	reflect.Struct: shapeStruct, reflect.Map: shapeMap, reflect.Slice: shapeSlice, reflect.Array: shapeSlice,
	reflect.Bool: shapeBool, reflect.String: shapeString,
	reflect.Int: shapeInt, reflect.Int8: shapeInt, reflect.Int16: shapeInt, reflect.Int32: shapeInt, reflect.Int64: shapeInt,
	reflect.Uint: shapeUint, reflect.Uint8: shapeUint, reflect.Uint16: shapeUint, reflect.Uint32: shapeUint,
	reflect.Uint64: shapeUint, reflect.Uintptr: shapeUint,
	reflect.Float32: shapeFloat, reflect.Float64: shapeFloat,
}

// field is a candidate json field of a struct.
type field struct {
	name   string
	typ    reflect.Type
	depth  int
	tagged bool
}

// structFields returns the json fields of struct t by exact name, with
// encoding/json's rules: a tag's name or the Go name, "-" skipped,
// unexported fields skipped, the fields of untagged embedded structs
// promoted, and of several fields with one name the shallowest (or the
// only tagged one among the shallowest) kept.
func structFields(t reflect.Type) (map[string]reflect.Type, map[string]string) {
	var all []field
	collectFields(t, 0, map[reflect.Type]bool{}, &all)
	best := map[string][]field{}
	for _, f := range all {
		cur := best[f.name]
		switch {
		case len(cur) == 0 || f.depth < cur[0].depth:
			best[f.name] = []field{f}
		case f.depth == cur[0].depth:
			best[f.name] = append(cur, f)
		}
	}
	fields, folded := map[string]reflect.Type{}, map[string]string{}
	for name, fs := range best {
		if f, ok := dominant(fs); ok {
			fields[name], folded[foldName(name)] = f.typ, name
		}
	}
	if len(fields) == 0 {
		return emptyFields, emptyFoldedNames
	}
	return fields, folded
}

// dominant picks the field that wins among fields of one name and depth.
func dominant(fs []field) (field, bool) {
	if len(fs) == 1 {
		return fs[0], true
	}
	var tagged []field
	for _, f := range fs {
		if f.tagged {
			tagged = append(tagged, f)
		}
	}
	if len(tagged) == 1 {
		return tagged[0], true
	}
	return field{}, false
}

func collectFields(t reflect.Type, depth int, visiting map[reflect.Type]bool, out *[]field) {
	if visiting[t] {
		return
	}
	visiting[t] = true
	defer delete(visiting, t)
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := sf.Type
		if sf.Anonymous && name == "" {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				collectFields(ft, depth+1, visiting, out)
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if strings.Contains(tag, ",string") {
			ft = reflect.TypeFor[any]() // quoted scalars: left to encoding/json
		}
		*out = append(*out, field{name: cmp.Or(name, sf.Name), typ: ft, depth: depth, tagged: name != ""})
	}
}

// foldName folds a name as encoding/json does when it matches keys to
// field names: ASCII letters upper-cased, other runes mapped through
// unicode.ToUpper(unicode.ToLower(r)).
func foldName(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf && 'a' <= r && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r < utf8.RuneSelf:
			b.WriteRune(r)
		default:
			b.WriteRune(unicode.ToUpper(unicode.ToLower(r)))
		}
	}
	return b.String()
}
