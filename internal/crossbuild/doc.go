// Package crossbuild holds no code: its test builds hotswap's commands for
// macOS (arm64 and amd64, without cgo) and vets the whole module as macOS
// sees it, so that `make test` on Linux catches what would break there.
// Nothing in it runs on a Mac.
package crossbuild
