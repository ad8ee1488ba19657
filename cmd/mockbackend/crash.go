package main

import "context"

type crashKey struct{}

// withCrash marks a request as the one that kills the process, once it has
// streamed a little, so that clients see a backend die mid-answer.
func withCrash(ctx context.Context) context.Context {
	return context.WithValue(ctx, crashKey{}, true)
}

func crashing(ctx context.Context) bool {
	v, _ := ctx.Value(crashKey{}).(bool)
	return v
}
