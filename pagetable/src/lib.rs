//! VMSAv8-64 stage-1/stage-2 I/O page tables.
#![no_std]
