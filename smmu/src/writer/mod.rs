//! The entry writer (SPEC D4): hitless ("used-bits") updates of live STEs and CDs.
