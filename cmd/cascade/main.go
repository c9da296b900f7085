// Command cascade rehearses upstream timeouts before production: one
// scenario file declares fake upstreams, a gateway, a load profile, a fault
// timeline and SLOs; `cascade run` runs it and exits with the verdict.
//
// Exit codes: 0 every objective passed; 1 an objective failed; 2 invalid
// scenario or usage; 3 the run itself failed (e.g. cannot bind); 130
// interrupted (Ctrl-C, SIGTERM, SIGHUP), with partial results written (a
// signal after the load ended cuts nothing short: the verdict's code). A
// second signal hurries the stop; a third kills the process. A run that
// fails or is interrupted before its load started leaves no run directory;
// one that fails after (a full disk) keeps what it measured, marked with
// the error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cascadehq/cascade/internal/interrupt"
	"github.com/cascadehq/cascade/internal/run"
	"github.com/cascadehq/cascade/results"
)

// Exit codes.
const (
	ExitPass        = 0
	ExitFail        = 1
	ExitUsage       = 2
	ExitRunFailed   = 3
	ExitInterrupted = 130
)

// exitError carries an exit code up to main.
type exitError struct {
	code int
	err  error // nil when the message was already printed
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, err error) error {
	switch {
	case code == ExitRunFailed && errors.Is(err, results.ErrDirInUse):
		code = ExitUsage // --out named a directory with results in it: nothing ran
	case code == ExitRunFailed && errors.Is(err, run.ErrInterruptedInSetup):
		code = ExitInterrupted // stopped by the user, not broken
	}
	return &exitError{code: code, err: err}
}

func main() {
	// SIGHUP too: a closed terminal or SSH session must stop a run the way
	// Ctrl-C does (remove what it started, write what it measured), not
	// kill it where it stands.
	sigs := make(chan os.Signal, 3)
	for _, s := range stopSignals {
		// Before Notify, which ends the ignoring: a signal this process
		// was started with ignored (a background job of a script, nohup)
		// cannot kill it once Reset restores that.
		ignoredAtStart[s] = signal.Ignored(s)
	}
	signal.Notify(sigs, stopSignals...)
	st := interrupt.New()
	ctx, cancel := context.WithCancel(interrupt.With(context.Background(), st))
	go escalate(sigs, cancel, st, os.Stderr, die)
	os.Exit(cli(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// escalate turns repeated stop signals into firmer stops (see package
// interrupt): the first cancels the context, the second hurries the
// teardown, the third kills. People press Ctrl-C again when the first
// seems slow, which is while the run removes what it started: a second
// press that killed at once left namespaces and containers behind, so each
// press says what it does and what the next one will do, and names the run
// `cascade cleanup --run` needs if it comes to that.
func escalate(sigs <-chan os.Signal, cancel context.CancelFunc, st *interrupt.Stop, stderr io.Writer, kill func(os.Signal)) {
	n := 0
	for sig := range sigs {
		n++
		runs := st.Runs()
		cleanup := ""
		if len(runs) > 0 {
			cleanup = "`cascade cleanup --run " + strings.Join(runs, "` and `cascade cleanup --run ") + "`"
		}
		leftovers := ""
		if cleanup != "" {
			leftovers = " (then " + cleanup + " removes what is left)"
		}
		switch n {
		case 1:
			switch {
			case st.Finishing():
				// The load had ended: its results are whole, and the run
				// exits with its verdict, not 130.
				fmt.Fprintf(stderr, "cascade: run %s had finished its load: its results are whole; finishing its report and removing what it started; "+
					"Ctrl-C again to stop waiting for the upstreams' work in flight, a third time to kill at once%s\n", strings.Join(runs, ", "), leftovers)
			case len(runs) > 0:
				fmt.Fprintf(stderr, "cascade: stopping run %s: writing partial results and removing what it started; "+
					"Ctrl-C again to stop waiting for the upstreams' work in flight, a third time to kill at once%s\n", strings.Join(runs, ", "), leftovers)
			}
			cancel()
		case 2:
			if len(runs) > 0 {
				fmt.Fprintf(stderr, "cascade: not waiting for the upstreams' work in flight; still removing what run %s started; "+
					"Ctrl-C again to kill at once%s\n", strings.Join(runs, ", "), leftovers)
			}
			st.Hurry()
		default:
			if cleanup != "" {
				fmt.Fprintf(stderr, "cascade: killed by a third signal; %s removes what it left\n", cleanup)
			}
			kill(sig)
			return
		}
	}
}

// stopSignals stop a run; ignoredAtStart records which of them the
// process was started with ignored.
var (
	stopSignals    = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}
	ignoredAtStart = map[os.Signal]bool{}
)

// die ends the process by sig, as if no handler had caught it, so the
// shell sees a process killed by that signal. A signal the process was
// started with ignored would not kill it once Reset restores that: the
// run went on for a second (its report, its HTML) after "killed by a
// third signal"; it exits at once instead.
func die(sig os.Signal) {
	if ignoredAtStart[sig] {
		os.Exit(ExitInterrupted)
	}
	signal.Reset()
	if s, ok := sig.(syscall.Signal); ok {
		_ = syscall.Kill(os.Getpid(), s)
		time.Sleep(time.Second) // delivery is asynchronous
	}
	os.Exit(ExitInterrupted)
}

// cli is the whole CLI, testable without a process.
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitPass
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "cascade:", ee.err)
		}
		return ee.code
	}
	// Cobra's own errors: unknown command or flag, wrong argument count.
	fmt.Fprintln(stderr, "cascade:", err)
	return ExitUsage
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "cascade",
		Short: "Rehearse upstream timeouts, retries and breakers under load before production",
		Long: `cascade runs a scenario: fake upstreams that inject faults on a schedule, a gateway
(cascade's own or yours), an open-model load generator, and a verdict on your SLOs.`,
		Example: `  cascade run scenarios/examples/quickstart.yaml
  cascade validate --strict my-scenario.yaml
  cascade report cascade-results/quickstart-20261122-101500`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	// One command per line: several people add commands at once.
	root.AddCommand(
		newRunCmd(stdout, stderr),
		newValidateCmd(stdout, stderr),
		newSchemaCmd(stdout),
		newReportCmd(stdout, stderr),
		newCompareCmd(stdout),
		newGatewayCmd(stdout, stderr),
		newUpstreamCmd(stdout, stderr),
		newCleanupCmd(stdout, stderr),
		newFaultsCmd(stdout),
		newGameDayCmd(stdout, stderr),
		newFaultCmd(stdout),
		newPhaseCmd(stdout),
		newStopCmd(stdout),
		newFaultProxyCmd(stdout, stderr),
		newToxiproxyCmd(stdout, stderr),
		newVersionCmd(stdout),
		newLadderCmd(stdout, stderr),
		newLoadCmd(stdout, stderr),
	)
	return root
}
