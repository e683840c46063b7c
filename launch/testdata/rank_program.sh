#!/usr/bin/env bash
# A small rank program for launcher_test.cc; the first argument picks what it
# does, and every line it prints names its rank.
set -u
rank="${RANK:-?}"
case "${1:-}" in
  env)
    for name in RANK LOCAL_RANK WORLD_SIZE LOCAL_WORLD_SIZE GROUP_RANK \
                MASTER_ADDR MASTER_PORT ACCELERATE_MIXED_PRECISION \
                ACCELERATE_USE_CPU ACCELERATE_DEBUG_MODE OMP_NUM_THREADS \
                TORCHELASTIC_RESTART_COUNT ACCELERATE_GRADIENT_ACCUMULATION_STEPS \
                ACCELERATE_USE_FSDP FSDP_SHARDING_STRATEGY \
                ACCELERATE_USE_DEEPSPEED ACCELERATE_DEEPSPEED_ZERO_STAGE \
                ACCELERATE_CONFIG_DS_FIELDS; do
      echo "ENV ${name}=${!name:-<unset>}"
    done
    echo "ARGS ${*:2}"
    echo "to stderr from ${rank}" >&2
    ;;
  fail)  # fail RANK CODE: that rank fails, the others wait to be stopped.
    if [[ "$rank" == "$2" ]]; then
      echo "boom from rank ${rank} line 1" >&2
      echo "boom from rank ${rank} line 2" >&2
      exit "$3"
    fi
    sleep 60
    ;;
  segv)  # segv RANK
    if [[ "$rank" == "$2" ]]; then kill -SEGV $$; fi
    sleep 60
    ;;
  wait_for_signal)  # wait_for_signal DIR: touches DIR/ready_RANK, then
                    # reports the signal it gets.
    trap 'echo "rank ${rank} got INT"; exit 7' INT
    trap 'echo "rank ${rank} got TERM"; exit 8' TERM
    echo "ready ${rank}"
    touch "$2/ready_${rank}"
    for _ in {1..600}; do sleep 0.1; done
    ;;
  restart)  # rank 1 fails on the first attempt only.
    if [[ "$rank" == "1" && "$TORCHELASTIC_RESTART_COUNT" == "0" ]]; then
      echo "rank 1 fails attempt 0" >&2
      exit 5
    fi
    echo "rank ${rank} attempt ${TORCHELASTIC_RESTART_COUNT} ok"
    ;;
  grandchild)  # leaves a sleeping grandchild behind and exits.
    sleep 300 &
    echo "$!" > "$2/grandchild_${rank}.pid"
    echo "rank ${rank} left $!"
    ;;
  detached)  # detached DIR: a descendant in its own session keeps stdout.
    setsid sleep 300 &
    echo "$!" > "$2/detached_${rank}.pid"
    echo "rank ${rank} detached $!"
    ;;
  progress)  # a progress bar redrawn with \r, then a newline
    printf '10%%\r50%%\r100%%\n'
    printf 'windows line\r\n' >&2
    ;;
  pwd)  # the folder the rank started in
    echo "PWD $(pwd -P)"
    ;;
  partial)  # output without a final newline
    printf 'no newline from %s' "$rank"
    ;;
  *)
    echo "unknown mode ${1:-}" >&2
    exit 64
    ;;
esac
