// Accelerate's memory estimate and its table (see estimate.h).

#include "bigmodel/estimate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bigmodel/dtype.h"

namespace accelerate::bigmodel {
namespace {

struct Node {
  int64_t bytes = 0;  // Everything under this module.
  // Child modules in order of first appearance.
  std::vector<std::string> order;
  std::map<std::string, std::unique_ptr<Node>> children;
  // Direct tensors, in order, with their bytes.
  std::vector<std::pair<std::string, int64_t>> tensors;
};

// Bytes of `entry` in Accelerate's empty model: floating-point tensors in
// float32, others (and unknown dtypes) in their own size.
int64_t TensorBytes(const TensorEntry& entry) {
  int64_t elements = 1;
  for (int64_t d : entry.shape) elements *= d;
  const Dtype* dtype = DtypeBySafetensorsName(entry.dtype);
  return elements * (dtype == nullptr || dtype->floating ? 4 : dtype->bytes);
}

// Python's str.center.
std::string Center(const std::string& text, size_t width) {
  if (text.size() >= width) return text;
  const size_t margin = width - text.size();
  const size_t left = margin / 2 + (margin & width & 1);
  return std::string(left, ' ') + text + std::string(margin - left, ' ');
}

// Display width of UTF-8 text (the box characters are one column each).
size_t Columns(const std::string& text) {
  size_t columns = 0;
  for (unsigned char c : text) columns += (c & 0xC0) != 0x80;
  return columns;
}

std::string Repeat(const std::string& s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

}  // namespace

ModelSizes ComputeModelSizes(const std::vector<TensorEntry>& tensors) {
  Node root;
  // Tensors in data order stand in for registration order.
  for (const TensorEntry& entry : tensors) {
    const std::vector<std::string> parts = absl::StrSplit(entry.name, '.');
    const int64_t bytes = TensorBytes(entry);
    Node* node = &root;
    node->bytes += bytes;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto& child = node->children[parts[i]];
      if (child == nullptr) {
        child = std::make_unique<Node>();
        node->order.push_back(parts[i]);
      }
      node = child.get();
      node->bytes += bytes;
    }
    node->tensors.emplace_back(parts.back(), bytes);
  }
  ModelSizes sizes;
  sizes.total_bytes = root.bytes;
  // Accelerate's get_max_layer_size over the top-level tensors and modules.
  struct Item {
    std::string name;
    const Node* node;  // Null for a top-level tensor.
    int64_t bytes;
  };
  std::vector<Item> queue;
  for (const auto& [name, bytes] : root.tensors)
    queue.push_back({name, nullptr, bytes});
  for (const std::string& name : root.order) {
    const Node* child = root.children.at(name).get();
    queue.push_back({name, child, child->bytes});
  }
  // A module whose children are all numbered is a list of blocks (a
  // transformer's layers): each block counts as one layer, as Accelerate's
  // no-split classes (e.g. LlamaDecoderLayer) make them count.
  const auto is_list = [](const Node* node) {
    if (node == nullptr || node->children.empty() || !node->tensors.empty()) {
      return false;
    }
    for (const std::string& name : node->order) {
      if (name.empty() ||
          name.find_first_not_of("0123456789") != std::string::npos) {
        return false;
      }
    }
    return true;
  };
  while (!queue.empty()) {
    const Item item = queue.front();
    queue.erase(queue.begin());
    if (is_list(item.node)) {
      std::vector<Item> blocks;
      for (const std::string& name : item.node->order) {
        const Node* child = item.node->children.at(name).get();
        blocks.push_back(
            {absl::StrCat(item.name, ".", name), nullptr, child->bytes});
      }
      queue.insert(queue.begin(), blocks.begin(), blocks.end());
      continue;
    }
    if (item.node == nullptr || item.node->children.empty()) {
      if (item.bytes > sizes.largest_layer_bytes) {
        sizes.largest_layer_bytes = item.bytes;
        sizes.largest_layers = {item.name};
      } else if (item.bytes == sizes.largest_layer_bytes) {
        sizes.largest_layers.push_back(item.name);
      }
      continue;
    }
    std::vector<Item> children;
    for (const std::string& name : item.node->order) {
      const Node* child = item.node->children.at(name).get();
      children.push_back(
          {absl::StrCat(item.name, ".", name), child, child->bytes});
    }
    queue.insert(queue.begin(), children.begin(), children.end());
  }
  return sizes;
}

absl::StatusOr<std::vector<MemoryRow>> EstimateMemory(
    const std::vector<TensorEntry>& tensors,
    const std::vector<std::string>& dtypes) {
  const ModelSizes sizes = ComputeModelSizes(tensors);
  std::vector<MemoryRow> rows;
  for (const std::string& dtype : dtypes) {
    MemoryRow row;
    row.dtype = dtype;
    const double fp32 = static_cast<double>(sizes.total_bytes);
    double divisor = 1;
    if (dtype == "float32") {
      row.training_bytes = fp32 * 4;  // Weights, gradients, 2 Adam states.
    } else if (dtype == "float16") {
      divisor = 2;
      // fp32 master weights, 1.5x for gradients, 2x for Adam: the largest
      // part is the optimizer's.
      row.training_bytes =
          std::max({fp32, fp32 + std::floor(fp32 / 2), fp32 * 2});
    } else if (dtype == "int8") {
      divisor = 4;
    } else if (dtype == "int4") {
      divisor = 8;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--dtypes: \"", dtype,
                       "\" is not one of float32, float16, int8, int4"));
    }
    row.total_bytes = fp32 / divisor;
    row.largest_layer_bytes =
        static_cast<double>(sizes.largest_layer_bytes) / divisor;
    rows.push_back(row);
  }
  return rows;
}

std::string ConvertBytes(double size, bool integral) {
  const char* units[] = {"bytes", "KB", "MB", "GB", "TB"};
  for (const char* unit : units) {
    if (size < 1024.0) {
      if (integral) return absl::StrCat(static_cast<int64_t>(size), " ", unit);
      // Python's str(round(x, 2)): rounded from the exact binary value
      // (as printf does), the shortest form, at least one decimal.
      char text[64];
      std::snprintf(text, sizeof(text), "%.2f", size);
      std::string s = text;
      while (s.back() == '0' && s[s.size() - 2] != '.') s.pop_back();
      return absl::StrCat(s, " ", unit);
    }
    size /= 1024.0;
    integral = false;
  }
  char text[64];
  std::snprintf(text, sizeof(text), "%.2f", size);
  std::string s = text;
  while (s.back() == '0' && s[s.size() - 2] != '.') s.pop_back();
  return absl::StrCat(s, " PB");
}

std::string MemoryTable(const std::vector<MemoryRow>& rows,
                        const std::string& title) {
  const std::vector<std::string> headers = {
      "dtype", "Largest Layer", "Total Size", "Training using Adam"};
  std::vector<std::vector<std::string>> cells;
  for (const MemoryRow& row : rows) {
    // float32 sizes are whole bytes, as in Python (int until divided).
    const bool integral = row.dtype == "float32";
    cells.push_back({row.dtype, ConvertBytes(row.largest_layer_bytes, integral),
                     ConvertBytes(row.total_bytes, integral),
                     row.training_bytes < 0
                         ? "N/A"
                         : ConvertBytes(row.training_bytes, true)});
  }
  std::vector<size_t> widths;
  for (size_t i = 0; i < headers.size(); ++i) {
    size_t w = headers[i].size();
    for (const auto& line : cells) w = std::max(w, line[i].size());
    widths.push_back(w);
  }
  size_t diff = 0;
  const auto make_row = [&](const std::string& left, const std::string& middle,
                            const std::string& right) {
    std::string out = left;
    for (size_t i = 0; i < widths.size(); ++i) {
      if (i > 0) out += middle;
      out += Repeat("─", widths[i]);
    }
    return out + Repeat("─", diff) + right;
  };
  std::string separator = make_row("├", "┼", "┤");
  size_t sum = 0;
  for (size_t w : widths) sum += w;
  const size_t title_columns = Columns(title);
  if (title_columns > sum) {
    diff = Columns(separator) > title_columns
               ? Columns(separator) - title_columns
               : title_columns - Columns(separator);
    widths.back() += diff;
  }
  separator = make_row("├", "┼", "┤");
  std::string table = make_row("┌", "─", "┐") + "\n" + "│" +
                      Center(title, Columns(separator) - 2) + "│\n" +
                      make_row("├", "┬", "┤") + "\n";
  widths.back() += diff;
  const auto line = [&](const std::vector<std::string>& values) {
    std::string out = "│";
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) out += "│";
      out += Center(values[i], widths[i]);
    }
    return out + "│\n";
  };
  table += line(headers) + separator + "\n";
  for (const auto& values : cells) table += line(values);
  table += "└";
  for (size_t i = 0; i < widths.size(); ++i) {
    if (i > 0) table += "┴";
    table += Repeat("─", widths[i]);
  }
  return table + "┘\n";
}

}  // namespace accelerate::bigmodel
