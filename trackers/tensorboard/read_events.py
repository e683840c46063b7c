"""Prints what TensorBoard's own reader sees in a run folder, one fact per
line, sorted, for tensorboard_tracker_test to compare with what it logged:

  scalar <tag> <step> <value as float32, printf %.9g>
  text <tag> <step> <text>
  histogram <tag> <step> <num> <min> <max> <sum of bucket counts>
  hparam <name> <value as JSON>
  session_end <status>
  records <count>   (every record's CRCs checked with TensorBoard's code)
"""

import json
import os
import struct
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins.hparams import plugin_data_pb2


def check_records(path):
    count = 0
    with open(path, "rb") as f:
        data = f.read()
    offset = 0
    while offset < len(data):
        header = data[offset : offset + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[offset + 8 : offset + 12])
        if masked_crc32c(header) != length_crc:
            raise SystemExit(f"bad length CRC at byte {offset} of {path}")
        body = data[offset + 12 : offset + 12 + length]
        (body_crc,) = struct.unpack(
            "<I", data[offset + 12 + length : offset + 16 + length]
        )
        if masked_crc32c(body) != body_crc:
            raise SystemExit(f"bad data CRC at byte {offset} of {path}")
        offset += 16 + length
        count += 1
    return count


def main(folder):
    lines = []
    records = 0
    for name in sorted(os.listdir(folder)):
        if "tfevents" in name:
            records += check_records(os.path.join(folder, name))
    lines.append(f"records {records}")
    acc = event_accumulator.EventAccumulator(
        folder,
        size_guidance={
            event_accumulator.SCALARS: 0,
            event_accumulator.HISTOGRAMS: 0,
            event_accumulator.TENSORS: 0,
        },
    )
    acc.Reload()
    tags = acc.Tags()
    for tag in tags["scalars"]:
        for event in acc.Scalars(tag):
            lines.append(f"scalar {tag} {event.step} {event.value:.9g}")
    for tag in tags["histograms"]:
        for event in acc.Histograms(tag):
            h = event.histogram_value
            lines.append(
                f"histogram {tag} {event.step} {h.num:g} {h.min:g} {h.max:g} "
                f"{sum(h.bucket):g}"
            )
    for tag in tags["tensors"]:
        metadata = acc.SummaryMetadata(tag)
        plugin = metadata.plugin_data.plugin_name
        for event in acc.Tensors(tag):
            if plugin == "text":
                for text in event.tensor_proto.string_val:
                    lines.append(f"text {tag} {event.step} {text.decode()}")
            elif plugin == "hparams":
                data = plugin_data_pb2.HParamsPluginData.FromString(
                    metadata.plugin_data.content
                )
                if data.HasField("session_start_info"):
                    for name, value in data.session_start_info.hparams.items():
                        kind = value.WhichOneof("kind")
                        lines.append(
                            f"hparam {name} {json.dumps(getattr(value, kind))}"
                        )
                if data.HasField("session_end_info"):
                    lines.append(
                        f"session_end {data.session_end_info.status}"
                    )
    print("\n".join(sorted(lines)))


if __name__ == "__main__":
    main(sys.argv[1])
