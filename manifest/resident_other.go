//go:build !linux

package manifest

// mappedFile is empty here: there is no /proc/self/maps to find the
// mapping in.
type mappedFile struct{}

func (m *Manifest) noteMapped() { m.mapped = mappedFile{} }

// dropResident does nothing here: the resident set is left to the kernel.
func (m *Manifest) dropResident() {}
