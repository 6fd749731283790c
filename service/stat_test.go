package service

import "syscall"

type syscallStat struct{ size, blocks int64 }

func statBlocks(p string, st *syscallStat) error {
	var s syscall.Stat_t
	if err := syscall.Stat(p, &s); err != nil {
		return err
	}
	st.size, st.blocks = s.Size, s.Blocks
	return nil
}
