//! The console: the board's PL011 UART behind a lock, and `println!`.

use core::fmt::{self, Write};
use core::ptr::NonNull;

use arm_pl011_uart::{PL011Registers, Uart, UniqueMmioPointer};
use spin::mutex::SpinMutex;

use crate::board::UART_BASE;

static CONSOLE: SpinMutex<Option<Uart<'static>>> = SpinMutex::new(None);

/// Takes the UART. Called once at boot; later calls do nothing.
pub fn init() {
    let mut console = CONSOLE.lock();
    if console.is_none() {
        let Some(base) = NonNull::new(UART_BASE as *mut PL011Registers) else {
            return;
        };
        // SAFETY: the initial page table maps the UART as Device memory, and this is the only
        // pointer to it that is ever created (guarded by `console.is_none()` under the lock).
        *console = Some(Uart::new(unsafe { UniqueMmioPointer::new(base) }));
    }
}

/// The crash stage's console: takes the UART anew whatever state the crashed stage left it
/// in (its lock held mid-line, its handle live), as a crash kernel probes its own console.
///
/// # Safety
/// No other code runs that uses the console (the crashed stage is gone: interrupts masked,
/// one CPU).
pub unsafe fn take_over() {
    // SAFETY: nothing else runs (caller contract), so no guard of the lock is live.
    unsafe { CONSOLE.force_unlock() };
    let mut console = CONSOLE.lock();
    let Some(base) = NonNull::new(UART_BASE as *mut PL011Registers) else {
        return;
    };
    // The crashed stage's handle is dropped without use: the UART is plain MMIO.
    // SAFETY: as in `init`; the previous handle is replaced here and never used again.
    *console = Some(Uart::new(unsafe { UniqueMmioPointer::new(base) }));
}

/// Writes formatted text to the console (dropped before [`init`]).
pub fn write_fmt(args: fmt::Arguments<'_>) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        let _ = uart.write_fmt(args);
    }
}

/// `println!` to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
