package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string // "" for valid, else a part of the error
	}{
		{nil, ""},
		{map[string]string{"CLIENT_MANAGER_TLS_CERT": "c.pem", "CLIENT_MANAGER_TLS_KEY": "k.pem"}, ""},
		{map[string]string{"CLIENT_MANAGER_TLS_CERT": "c.pem"}, "go together"},
		{map[string]string{"CLIENT_MANAGER_TLS_KEY": "k.pem"}, "go together"},
		{map[string]string{"CLIENT_MANAGER_API_RATE": "0"}, "API_RATE"},
		{map[string]string{"CLIENT_MANAGER_API_BURST": "0"}, "API_BURST"},
		{map[string]string{"CLIENT_MANAGER_ALLOWED_ORIGINS": "https://a.example.com,*.b.example.com"}, ""},
		{map[string]string{"CLIENT_MANAGER_ALLOWED_ORIGINS": "[x"}, "ALLOWED_ORIGINS"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.env), func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var cfg config
			if err := envconfig.Process("CLIENT_MANAGER", &cfg); err != nil {
				t.Fatal(err)
			}
			err := cfg.validate()
			if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("validate() = %v, want %q", err, tt.want)
			}
		})
	}
}
