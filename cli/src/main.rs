//! smmuctl: decode SMMUv3 entries and registers, inspect dumped tables, simulate a kdump
//! takeover.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod decode;
mod dump;
mod inspect;
mod num;
mod regs;
mod simulate;

/// Tools for people working with Arm SMMUv3 state.
#[derive(Parser)]
#[command(name = "smmuctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode a structure from its 64-bit words (lowest-addressed first), or a register.
    ///
    /// Every field by its specification name, with what enumerated values mean; a field that
    /// holds an address's upper bits (S1ContextPtr, L2Ptr, TTB0, queue bases, …) is printed as
    /// the address. A register value with reserved (RES0) bits set gets a warning line.
    ///
    /// Examples: `smmuctl decode ste 0x9 0 0 0 0 0 0 0`, `smmuctl decode reg CR0 0xd`.
    Decode {
        /// What to decode.
        #[arg(value_enum)]
        what: decode::Structure,
        /// The words (`0x…` hexadecimal, `0b…` binary, `0o…` octal, else decimal; `_` may
        /// separate digits); for `reg`, the register name then its value.
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
        /// Print one JSON object: field name → the field's raw integer, "<field>_address" →
        /// the address for pointer fields, "kind", and "warnings" (strings) if any.
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario on the SMMUv3 model.
    Simulate {
        #[command(subcommand)]
        what: Simulation,
    },
    /// Would a crash kernel adopt this SMMU's live stream table? Runs the adoption check
    /// offline on a dump: the SMMU's registers and the crashed kernel's memory.
    ///
    /// Prints the verdict (adopt, full reset, dump incomplete, or an SMMU the driver cannot
    /// run) with its reason, the table's shape, counts of the valid STEs by kind, the ASIDs
    /// and VMIDs an adoption reserves, and one line per valid StreamID. Exit status: 0 adopt,
    /// 1 full reset, 2 wrong arguments, 3 the dump lacks memory the check needs, 4 the driver
    /// cannot run this SMMU (neither adopted nor reset).
    Inspect(inspect::InspectArgs),
}

#[derive(Subcommand)]
enum Simulation {
    /// The crash scenario: an old kernel with three devices doing DMA crashes, the crash
    /// kernel brings the SMMU up with one strategy, each device's driver reattaches it.
    ///
    /// Prints what each device's in-flight DMA met, the crash kernel's verdict and the number
    /// of violations the model logged, then what each column means ("misdirected": the DMA
    /// reached memory the old kernel did not map it to, i.e. memory corruption).
    Kdump {
        /// How the crash kernel brings the SMMU up.
        #[arg(long, value_enum, default_value_t = simulate::StrategyArg::Adopt)]
        strategy: simulate::StrategyArg,
        /// Seed of the model's randomness (DMA patterns, ack latencies).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Also draw the crash timeline per device (attach, DMA, crash, bring-up, probe,
        /// quiesce, re-attach; each transaction coloured by what it met) into this SVG file.
        #[arg(long, value_name = "FILE")]
        svg: Option<std::path::PathBuf>,
    },
    /// Confidential device assignment: a TDISP GPU assigned to a Realm, from the creation of
    /// its Realm stream (not valid) through lock, measurement, report, RUN, a refused stale
    /// nonce tuple, acceptance, private DMA, the host's DMA stopped by the granule protection
    /// check, to revoke.
    ///
    /// Prints one row per step: the device's TDISP state, whether its Realm STE is valid,
    /// what the step's DMA met and what the driver answered, then what each column means.
    Realm {
        /// Seed of the device's nonces.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Also draw the timeline (TDISP state, STE valid, DMA per step) into this SVG file.
        #[arg(long, value_name = "FILE")]
        svg: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode { what, args, json } => match decode::decode(what, &args) {
            Ok(d) => output(if json {
                format!("{}\n", d.to_json())
            } else {
                d.to_text()
            }),
            Err(decode::UsageError(msg)) => usage_error(&msg),
        },
        Command::Simulate {
            what:
                Simulation::Kdump {
                    strategy,
                    seed,
                    json,
                    svg,
                },
        } => match simulate::kdump(strategy, seed) {
            Ok(report) => {
                if let Some(path) = svg {
                    if let Err(e) = std::fs::write(&path, simulate::to_svg(&report)) {
                        eprintln!("smmuctl: cannot write '{}': {e}", path.display());
                        return ExitCode::from(1);
                    }
                }
                output(if json {
                    format!("{}\n", simulate::to_json(&report))
                } else {
                    simulate::to_text(&report)
                })
            }
            Err(e) => {
                eprintln!("smmuctl: the kdump scenario failed: {e}");
                ExitCode::from(1)
            }
        },
        Command::Simulate {
            what: Simulation::Realm { seed, json, svg },
        } => match simulate::realm::run(seed) {
            Ok(report) => {
                if let Some(path) = svg {
                    if let Err(e) = std::fs::write(&path, simulate::realm::to_svg(&report)) {
                        eprintln!("smmuctl: cannot write '{}': {e}", path.display());
                        return ExitCode::from(1);
                    }
                }
                output(if json {
                    format!("{}\n", simulate::realm::to_json(&report))
                } else {
                    simulate::realm::to_text(&report)
                })
            }
            Err(e) => {
                eprintln!("smmuctl: the realm scenario failed: {e}");
                ExitCode::from(1)
            }
        },
        Command::Inspect(args) => match inspect::run(&args) {
            Ok(code) => code,
            Err(decode::UsageError(msg)) => usage_error(&msg),
        },
    }
}

/// Prints the result. A reader that went away (`smmuctl inspect … | head`) is not an error.
fn output(text: String) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("smmuctl: cannot write the output: {e}");
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// A malformed call: one line on stderr, exit status 2.
fn usage_error(msg: &str) -> ExitCode {
    eprintln!("smmuctl: {msg}");
    ExitCode::from(2)
}
