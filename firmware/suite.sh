#!/usr/bin/env bash
# Every firmware run on one SMMU: `confine`, its broken variants, every `kdump` mode and the
# crash stage's broken variants, with one stage's domains. The SMMU is whatever qemu-run boots
# (QEMU, QEMU_MACHINE, QEMU_ARGS from the environment); .ci/run calls this once per QEMU and
# machine.
#
#   firmware/suite.sh [--stage 1|2|nested]      (default 1; nested needs an SMMU with S1P and
#                                                S2P, QEMU 10.0's virt)
#
# Exits non-zero at the first run whose verdict is not the expected one: 0 for the plain runs,
# 1 on the named check's FAIL line for each deliberately broken variant.
set -euo pipefail
cd "$(dirname "$0")"
stage=1
if [ "$#" -gt 0 ]; then
  [ "$1" = --stage ] && [ "$#" -eq 2 ] || { echo "usage: $0 [--stage 1|2|nested]" >&2; exit 2; }
  stage=$2
fi
export QEMU_TIMEOUT=${QEMU_TIMEOUT:-60}
echo "-- on $("${QEMU:-qemu-system-aarch64}" --version | head -n 1), -M ${QEMU_MACHINE:-virt,iommu=smmuv3} ${QEMU_ARGS:-}, --stage $stage"

# A plain run: exit 0; its check lines and verdict are printed.
run() {
  echo "-- $*"
  rc=0
  out=$(cargo run -q --release "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | grep -E '^(PASS|FAIL|verdict)' || true
  if [ "$rc" -ne 0 ]; then
    printf '%s\n' "$out" | tail -n 20
    echo "exit $rc: cargo run $*" >&2
    exit 1
  fi
}

# A deliberately broken variant: exit 1 (not a crash or a timeout) on the check it breaks.
broken() {
  local check=$1
  shift
  echo "-- $* (must fail \"$check\")"
  rc=0
  out=$(cargo run -q --release "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | grep -E '^(PASS|FAIL|verdict)' || true
  if [ "$rc" -ne 1 ] || ! printf '%s\n' "$out" | grep -q "^FAIL $check:"; then
    echo "the variant was not caught (exit $rc): cargo run $*" >&2
    exit 1
  fi
}

# SPEC F1: the driver confines an edu device's DMA.
run -- --stage "$stage"
if [ "$stage" = nested ]; then
  # SPEC D13: the guest's stage-1 unmap and the parent's unmap each checked by its own line.
  broken "guest unmap invalidates" --features broken-skip-tlbi -- --stage nested
  broken "nested DMA translated" --features broken-wrong-page -- --stage nested
  # The guest's TLBI issued raw with VMID 0, not through guest_invalidate.
  broken "guest unmap invalidates" --features broken-nested-vmid -- --stage nested
  # The parent's unmap invalidated with TLBI_S2_IPA alone (combined entries left).
  broken "parent unmap invalidates" --features broken-parent-no-nh-all -- --stage nested
else
  broken "unmap invalidates" --features broken-skip-tlbi -- --stage "$stage"
  broken "stage-$stage DMA translated" --features broken-wrong-page -- --stage "$stage"
fi

# SPEC F2: the crash for real (src/bin/kdump.rs): a crash stage brings the live SMMU up while
# edu DMA the old stage started is in flight. Each mode exits 0 only when its expectation held:
# adopt keeps the transfers translating; a full reset (chosen, or the fallback from the
# corrupted level-1 descriptor, l1-bad-span) loses them, bypassed or aborted as memory shows.
for mode in "--strategy adopt" "--strategy abort" "--strategy abort --dma-during-reset" \
  "--strategy adopt --corrupt-l1"; do
  # shellcheck disable=SC2086 # the mode is several arguments
  run --bin kdump -- --stage "$stage" $mode
done
# A crash stage that brings the driver up by value (through its stack) instead of in place
# must fail its footprint line.
broken footprint --bin kdump --features broken-by-value-boot -- --stage "$stage" --strategy adopt
# A crash stage that does not say it is a crash kernel resets the SMMU under the DMA: the adopt
# run must fail on the transfers.
broken "transfer in flight" --bin kdump --features broken-not-crash-kernel -- --stage "$stage" \
  --strategy adopt
