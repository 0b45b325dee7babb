// Command summarize reads what the kernel-matrix guests wrote (see
// test/kernels/run.sh) and prints, per kernel, its version, the attach types
// it has and how many tests ran, passed, failed and skipped, with the skip
// reasons. It exits 1 if a guest did not finish, a test binary failed, or a
// test of an attach type the kernel has was skipped.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: summarize RESULTS-DIR...")
		os.Exit(2)
	}
	ok := true
	for _, dir := range os.Args[1:] {
		k, err := readKernel(dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", dir, err)
			ok = false
			continue
		}
		if !k.print(os.Stdout) {
			ok = false
		}
	}
	if !ok {
		fmt.Println("test-kernels: FAIL")
		os.Exit(1)
	}
	fmt.Println("test-kernels: ok")
}
