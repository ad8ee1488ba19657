package config

import (
	"reflect"
	"testing"
)

func TestCompare(t *testing.T) {
	old := mustParse(t, `
ports: 9000-9100
models:
  keep: {cmd: "srv --port ${PORT}"}
  alias: {cmd: "srv --port ${PORT}", aliases: [a1]}
  ttl: {cmd: "srv --port ${PORT}", ttl: 5m}
  cmd: {cmd: "srv --port ${PORT}"}
  env: {cmd: "srv --port ${PORT}", env: ["A=1"]}
  mem: {cmd: "srv --port ${PORT}", memory: {ram: 1GiB}}
  gone: {cmd: "srv --port ${PORT}"}
`)
	next := mustParse(t, `
ports: 9000-9200
api_keys: [k]
scheduling: {max_wait: 9s}
models:
  keep: {cmd: "srv --port ${PORT}"}
  alias: {cmd: "srv --port ${PORT}", aliases: [a2]}
  ttl: {cmd: "srv --port ${PORT}", ttl: 1m}
  cmd: {cmd: "srv --port ${PORT} --ctx 4096"}
  env: {cmd: "srv --port ${PORT}", env: ["A=2"]}
  mem: {cmd: "srv --port ${PORT}", memory: {ram: 2GiB}}
  new: {cmd: "srv --port ${PORT}"}
`)
	got := Compare(old, next)
	want := Diff{
		Added:        []string{"new"},
		Removed:      []string{"gone"},
		Restart:      []string{"cmd", "env", "mem"},
		Changed:      []string{"alias", "ttl"},
		NeedsRestart: []string{"ports"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Compare:\n got %+v\nwant %+v", got, want)
	}
	if d := Compare(old, old); len(d.Added)+len(d.Removed)+len(d.Restart)+len(d.Changed)+len(d.NeedsRestart) != 0 {
		t.Errorf("a config compared with itself: %+v", d)
	}
	// What needs a restart keeps its running value; the rest is new.
	next.KeepFixed(old)
	if d := Compare(old, next); len(d.NeedsRestart) != 0 || next.Ports != old.Ports || len(next.APIKeys) != 1 {
		t.Errorf("after KeepFixed: %+v, ports %v, keys %v", d.NeedsRestart, next.Ports, next.APIKeys)
	}
}
