package process

// LikeDarwin has starters leave out Pdeathsig from now on, as on macOS:
// the guard alone then ends a killed hotswap's backends. Call it before
// starting anything.
func LikeDarwin() { noPdeathsig = true }

// GuardPid is the pid of s's running guard, 0 if none.
func GuardPid(s *ExecStarter) int {
	if s.guard == nil {
		return 0
	}
	return s.guard.pid()
}
