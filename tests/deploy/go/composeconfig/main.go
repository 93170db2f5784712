// Command composeconfig loads Compose files with compose-go, the loader inside `docker compose`,
// and prints the resolved project as JSON: what `docker compose config --format json` prints,
// without needing Docker. Interpolation, schema validation, normalization and consistency
// checks (unknown services in depends_on, undefined volumes) fail the load with its message.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: composeconfig COMPOSE_FILE... (profiles from COMPOSE_PROFILES)")
		os.Exit(2)
	}
	options, err := cli.NewProjectOptions(
		os.Args[1:],
		// Interpolation sees this process's environment, as docker compose sees the shell's.
		cli.WithEnv(os.Environ()),
		cli.WithDefaultProfiles(),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
