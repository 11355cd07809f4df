//! smmuctl: decode SMMUv3 entries and registers, inspect dumped tables, simulate a kdump
//! takeover.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod decode;

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
    /// Examples: `smmuctl decode ste 0x9 0 0 0 0 0 0 0`, `smmuctl decode reg CR0 0xd`.
    Decode {
        /// What to decode.
        #[arg(value_enum)]
        what: decode::Structure,
        /// Hexadecimal words (`0x` optional); for `reg`, the register name then its value.
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
        /// Print one JSON object: field name → integer, plus "kind".
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode { what, args, json } => match decode::decode(what, &args) {
            Ok(d) => {
                if json {
                    println!("{}", d.to_json());
                } else {
                    print!("{}", d.to_text());
                }
                ExitCode::SUCCESS
            }
            Err(decode::UsageError(msg)) => {
                eprintln!("smmuctl: {msg}");
                ExitCode::from(2)
            }
        },
    }
}
