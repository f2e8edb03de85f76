package nats

import "testing"

func TestPercentEncode(t *testing.T) {
	tests := map[string]string{
		"":                            "",
		"data_products/42":            "data_products/42",
		"a b":                         "a%20b",
		`say "hi" 100%`:               "say%20%22hi%22%20100%25",
		"line\r\nbreak\ttab\x00\x7f":  "line%0D%0Abreak%09tab%00%7F",
		"Euro \u20ac \U0001F600":      "Euro%20%E2%82%AC%20%F0%9F%98%80", // the binding's own example
		"printable !#$&'()*+,-./:;<=": "printable%20!#$&'()*+,-./:;<=",
	}
	for in, want := range tests {
		if got := percentEncode(in); got != want {
			t.Errorf("percentEncode(%q) = %q, want %q", in, got, want)
		}
	}
}
