"""Python peer of first_barrier.cc: joins the gloo group, passes one barrier,
and (rank 0) prints the wall clock in nanoseconds."""
import time

import torch.distributed as dist

dist.init_process_group("gloo")
dist.barrier()
now = time.time_ns()
if dist.get_rank() == 0:
    print("BARRIER_NS %d" % now, flush=True)
dist.destroy_process_group()
