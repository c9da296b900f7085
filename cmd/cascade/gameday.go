package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cascadehq/cascade/internal/gameday"
	"github.com/cascadehq/cascade/internal/regfile"
	"github.com/cascadehq/cascade/internal/run"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// liveFlags make `cascade run` a game day.
type liveFlags struct {
	live    bool
	control string
}

func (f *liveFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.live, "live", false, "run as a game day: control API, dashboard, manual gates (as cascade gameday)")
	cmd.Flags().StringVar(&f.control, "control", "127.0.0.1:0", "with --live: the control API's and dashboard's address (loopback only)")
}

func (f *liveFlags) options() *run.LiveOptions {
	if !f.live {
		return nil
	}
	return &run.LiveOptions{Listen: f.control}
}

// check refuses what cannot run: gates without a game day, a game day of
// several executors, a control address off loopback.
func (f *liveFlags) check(p *plan.Plan) error {
	if !f.live {
		if len(p.Gates) > 0 {
			return run.ErrNeedsLive
		}
		return nil
	}
	if len(p.Load.Executors) > 0 {
		return run.LiveExecutorsError(p)
	}
	return gameday.CheckListen(f.control)
}

func newGameDayCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := newRunCmd(stdout, stderr)
	cmd.Use = "gameday SCENARIO.yaml"
	cmd.Short = "Run a scenario live: control API, dashboard, manual gates, auto-halt, journal"
	cmd.Long = `Gameday runs the scenario as 'cascade run' does, and opens a control API and a live
dashboard on loopback (a token, printed at start and kept in RUN_DIR/control.json with mode
0600, is required on every call). From another shell:

  cascade fault add --kind latency --target api --params '{delay: 200ms}'   # starts now
  cascade fault rm NAME        cascade fault ls
  cascade phase next           # opens a manual gate (phases: [{name: ..., start: ..., gate: manual}])
  cascade stop                 # ends the load gracefully: results are written and judged

Safety checks (safety: [{objective: "error_rate < 20%", window: 5s, on_breach: stop|continue}])
remove every fault at once when one breaks. Everything done by hand is written to
RUN_DIR/journal.jsonl; 'cascade gameday export RUN_DIR > scenario.yaml' turns the game day
into a scenario that replays it.`
	cmd.Example = `  cascade gameday scenarios/examples/gameday/gameday.yaml
  export CASCADE_RUN=cascade-results/gameday-20261122-101500   # the directory it prints
  cascade fault add --kind error --target api --params '{status: 503, probability: 0.3}' --duration 30s
  cascade gameday export $CASCADE_RUN > replay.yaml`
	live := cmd.Flags().Lookup("live")
	_ = live.Value.Set("true")
	live.DefValue = "true"
	live.Hidden = true
	// A game day runs once, with people at the controls: --repeat is
	// refused here, and --control needs no --live, so the help says so.
	_ = cmd.Flags().MarkHidden("repeat")
	cmd.Flags().Lookup("control").Usage = "the control API's and dashboard's address (loopback only)"
	cmd.AddCommand(newExportCmd(stdout))
	return cmd
}

func newExportCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "export RUN_DIR",
		Short: "Turn a game day's run into a scenario that replays it (for CI)",
		Long: `Export writes a scenario file to stdout: the scenario that ran, with every fault as it
happened (manual ones included, at the times they were added and removed, and cut where a
safety check halted them), each gate as a phase with the times it really opened, and the
load profile as it ran (gate holds included). Running it reproduces the game day's fault
timeline. The safety checks are kept, unless one halted the run: then they are left out
(a comment says so), as the halts they caused are in the fault windows already.`,
		Example: "  cascade gameday export cascade-results/gameday-20261122-101500 > replay.yaml\n  cascade run replay.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := gameday.Export(args[0])
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			_, err = stdout.Write(b)
			return err
		},
	}
}

// controlFlags find the live run a verb acts on and say who acts.
type controlFlags struct {
	run string
	who string
}

func (f *controlFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.run, "run", "", "the live run's directory (default $"+gameday.EnvRun+", else the newest live run under ./cascade-results)")
	cmd.Flags().StringVar(&f.who, "who", "", "who acts, for the journal (default $CASCADE_WHO, else your user name)")
}

func (f *controlFlags) client() (*gameday.Client, error) {
	dir, err := gameday.FindRun(f.run)
	if err != nil {
		return nil, exitWith(ExitUsage, err)
	}
	who := f.who
	if who == "" {
		who = os.Getenv("CASCADE_WHO")
	}
	if who == "" {
		if u, err := user.Current(); err == nil {
			who = u.Username
		}
	}
	if who == "" {
		who = os.Getenv("USER")
	}
	c, err := gameday.Dial(dir, who)
	if err != nil {
		return nil, exitWith(ExitUsage, err)
	}
	return c, nil
}

// apiExit maps a refused call to an exit code: a malformed request or a
// rejected token is a usage error (2); a conflict (no such fault, no gate
// waiting) fails the verb (1); a run that does not answer is 3.
func apiExit(err error) error {
	var he *gameday.HTTPError
	if errors.As(err, &he) {
		switch {
		case he.Status == 400 || he.Status == 401 || he.Status == 403 || he.Status == 413:
			return exitWith(ExitUsage, errors.New(he.Msg))
		default:
			return exitWith(ExitFail, errors.New(he.Msg))
		}
	}
	return exitWith(ExitRunFailed, err)
}

// call makes one request to the live run's control API: it finds the run,
// bounds the call in time and maps the API's refusals to exit codes, so each
// verb is only its request and its line of output.
func (f *controlFlags) call(cmd *cobra.Command, do func(ctx context.Context, c *gameday.Client) error) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
	defer cancel()
	if err := do(ctx, c); err != nil {
		return apiExit(err)
	}
	return nil
}

func newFaultCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fault",
		Short: "Add, remove and list faults of a live run (cascade gameday)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newFaultAddCmd(stdout), newFaultRmCmd(stdout), newFaultLsCmd(stdout))
	return cmd
}

func newFaultAddCmd(stdout io.Writer) *cobra.Command {
	var cf controlFlags
	var kind, target, params, name, duration, ramp, file string
	cmd := &cobra.Command{
		Use:   "add (--kind KIND --target TARGET [--params YAML] | --file FAULT.yaml)",
		Short: "Start a fault now in a live run",
		Long: `Add starts a fault now. It is checked exactly as a fault in a scenario file is (the same
messages); without --duration it lasts until 'cascade fault rm' or the end of the run.
--file takes one fault as in a scenario's faults list (start does not apply).`,
		Example: `  cascade fault add --kind latency --target api --params '{delay: 200ms}'
  cascade fault add --kind error --target 'api[1]' --params '{status: 503}' --name api1-503 --duration 30s
  cascade fault add --file fault.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var doc []byte
			source := "fault"
			switch {
			case file != "":
				if kind != "" || target != "" || params != "" {
					return exitWith(ExitUsage, errors.New("--file excludes --kind, --target and --params"))
				}
				b, err := regfile.Read(file, regfile.MaxConfig)
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				doc, source = b, file
				if name != "" || duration != "" || ramp != "" {
					return exitWith(ExitUsage, errors.New("with --file, give name, duration and ramp in the file"))
				}
			case kind == "" || target == "":
				return exitWith(ExitUsage, errors.New("give --kind and --target (or --file FAULT.yaml)"))
			default:
				doc = faultDoc(kind, target, params, name, duration, ramp)
			}
			return cf.call(cmd, func(ctx context.Context, c *gameday.Client) error {
				a, err := c.AddFault(ctx, source, doc)
				if err == nil {
					fmt.Fprintf(stdout, "%s: %s on %s started at %.3fs\n", a.Name, a.Kind, a.Target, a.T)
				}
				return err
			})
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&kind, "kind", "", "fault kind (cascade faults lists them)")
	cmd.Flags().StringVar(&target, "target", "", `an upstream ("api"), one replica ("api[1]") or a random one ("api[random]")`)
	cmd.Flags().StringVar(&params, "params", "", `the kind's parameters as YAML, e.g. '{delay: 200ms}'`)
	cmd.Flags().StringVar(&name, "name", "", "the fault's name (default manual-<kind>-N)")
	cmd.Flags().StringVar(&duration, "duration", "", "end it by itself after this long (default: until removed)")
	cmd.Flags().StringVar(&ramp, "ramp", "", "grow it from nothing to full strength over this long")
	cmd.Flags().StringVar(&file, "file", "", "one fault as YAML, as in a scenario's faults list")
	return cmd
}

// faultDoc writes the flags as a fault document, for the server's
// compiler. Scalars are quoted; params is YAML as given.
func faultDoc(kind, target, params, name, duration, ramp string) []byte {
	var b strings.Builder
	q := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %q\n", k, v)
		}
	}
	q("name", name)
	q("kind", kind)
	q("target", target)
	q("duration", duration)
	q("ramp", ramp)
	if p := strings.TrimSpace(params); p != "" {
		if strings.Contains(p, "\n") {
			b.WriteString("params:\n")
			for _, line := range strings.Split(p, "\n") {
				b.WriteString("  " + line + "\n")
			}
		} else {
			b.WriteString("params: " + p + "\n")
		}
	}
	return []byte(b.String())
}

func newFaultRmCmd(stdout io.Writer) *cobra.Command {
	var cf controlFlags
	cmd := &cobra.Command{
		Use:     "rm NAME",
		Short:   "End a fault now in a live run (manual or scripted; its later occurrences are cancelled)",
		Example: "  cascade fault rm manual-latency-1",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.call(cmd, func(ctx context.Context, c *gameday.Client) error {
				d, err := c.RemoveFault(ctx, args[0])
				if err == nil {
					fmt.Fprintf(stdout, "%s: removed at %.3fs\n", d.Fault, d.T)
				}
				return err
			})
		},
	}
	cf.register(cmd)
	return cmd
}

func newFaultLsCmd(stdout io.Writer) *cobra.Command {
	var cf controlFlags
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the faults active now in a live run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var st gameday.Status
			if err := cf.call(cmd, func(ctx context.Context, c *gameday.Client) (err error) {
				st, err = c.Status(ctx)
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s · %s · run clock %.1fs · scenario clock %.1fs\n", st.Scenario, st.State, st.T, st.ScriptT)
			if st.Gate != nil {
				fmt.Fprintf(stdout, "gate %s closed since %.1fs (opens by itself at %.1fs): cascade phase next\n", st.Gate.Name, st.Gate.Since, st.Gate.Deadline)
			}
			for _, h := range st.Halts {
				fmt.Fprintf(stdout, "HALT at %.1fs: %s measured %s; removed %s\n", h.TS, h.Objective, h.Measured, strings.Join(h.Removed, ", "))
			}
			if len(st.Faults) == 0 {
				fmt.Fprintln(stdout, "no fault is active")
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tTARGET\tSINCE\tBY\tTOOK EFFECT")
			for _, f := range st.Faults {
				by := "scenario"
				if f.Manual {
					by = f.By
				}
				since := fmt.Sprintf("%.1fs", f.Since)
				if f.EndsAt > 0 {
					since += fmt.Sprintf(" → %.1fs", f.EndsAt)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", f.Name, f.Kind, f.Target, since, by, f.Fired)
			}
			return tw.Flush()
		},
	}
	cf.register(cmd)
	return cmd
}

func newPhaseCmd(stdout io.Writer) *cobra.Command {
	var cf controlFlags
	next := &cobra.Command{
		Use:   "next",
		Short: "Open the manual gate the live run is waiting at",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.call(cmd, func(ctx context.Context, c *gameday.Client) error {
				d, err := c.NextPhase(ctx)
				if err == nil {
					fmt.Fprintf(stdout, "gate %s opened at %.3fs\n", d.Phase, d.T)
				}
				return err
			})
		},
	}
	cf.register(next)
	cmd := &cobra.Command{Use: "phase", Short: "Manual phase gates of a live run", Args: cobra.NoArgs}
	cmd.AddCommand(next)
	return cmd
}

func newStopCmd(stdout io.Writer) *cobra.Command {
	var cf controlFlags
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "End a live run gracefully: no new requests, results written and judged as usual",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.call(cmd, func(ctx context.Context, c *gameday.Client) error {
				d, err := c.Stop(ctx)
				if err == nil {
					fmt.Fprintf(stdout, "stopping at %.3fs: requests in flight finish, then the results are written to %s\n", d.T, c.Dir)
				}
				return err
			})
		},
	}
	cf.register(cmd)
	return cmd
}

// ranStages is the load profile a run followed: a game day's, with its
// gates' holds, from its run directory; otherwise the scenario's.
func ranStages(dir string, scripted []loadgen.Stage) []loadgen.Stage {
	if st, ok := gameday.RanStages(dir); ok {
		return st
	}
	return scripted
}
