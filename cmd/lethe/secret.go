package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// termFD reports whether f is a terminal.
func termFD(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// readSecret prompts on w and reads a line from the terminal f without echo.
func readSecret(f *os.File, w io.Writer, prompt string) (string, error) {
	fmt.Fprint(w, prompt)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(w)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	return string(b), nil
}
