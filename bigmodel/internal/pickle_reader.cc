#include "bigmodel/internal/pickle_reader.h"

#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

namespace accelerate::bigmodel_internal {
namespace {

// What the reader refuses: the message, then the offset it is at.
struct PickleError {
  std::string message;
};

// The Python objects the reader knows by name (`GLOBAL module name`).
enum class Global {
  kNone,            // Not a global: a value.
  kRebuildTensor,   // torch._utils._rebuild_tensor_v2
  kRebuildParameter,  // torch._utils._rebuild_parameter
  kStorageType,     // torch.FloatStorage and the like
  kOrderedDict,     // collections.OrderedDict
  kEncode,          // _codecs.encode (bytes in protocol 2)
  kUnknown,         // Anything else (NumPy's): a placeholder.
};

// One entry of the stack (and of the memo): a value, a known global, or a
// placeholder for a Python object that has no `IValue` (`kUnknown`, also
// what calling or building one gives). Placeholders read as None.
struct Item {
  c10::IValue value;
  Global global = Global::kNone;
  // A kStorageType's type; for a tuple, that of its item 1 (a persistent
  // id's storage type, which the tuple's `value` holds as None).
  std::optional<at::ScalarType> storage_type;

  bool IsValue() const { return global == Global::kNone; }
  c10::IValue Value() const { return IsValue() ? value : c10::IValue(); }
};

Item ValueItem(c10::IValue value) {
  Item item;
  item.value = std::move(value);
  return item;
}

Item GlobalItem(Global global) {
  Item item;
  item.global = global;
  return item;
}

std::optional<at::ScalarType> StorageType(const std::string& name) {
#define ACCELERATE_STORAGE_TYPE(_, scalar) \
  if (name == #scalar "Storage") return at::k##scalar;
  AT_FORALL_SCALAR_TYPES_WITH_COMPLEX_AND_QINTS(ACCELERATE_STORAGE_TYPE)
#undef ACCELERATE_STORAGE_TYPE
  return std::nullopt;
}

Global Resolve(const std::string& module, const std::string& name) {
  if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
    return Global::kRebuildTensor;
  }
  if (module == "torch._utils" && name == "_rebuild_parameter") {
    return Global::kRebuildParameter;
  }
  if (module == "torch" && StorageType(name).has_value()) {
    return Global::kStorageType;
  }
  if (module == "collections" && name == "OrderedDict") {
    return Global::kOrderedDict;
  }
  if (module == "_codecs" && name == "encode") return Global::kEncode;
  return Global::kUnknown;
}

// The ints of a tuple (a tensor's size or stride).
std::vector<int64_t> Ints(const c10::IValue& value, const char* what) {
  if (!value.isTuple()) throw PickleError{absl::StrCat(what, " not a tuple")};
  std::vector<int64_t> out;
  for (const c10::IValue& item : value.toTupleRef().elements()) {
    if (!item.isInt()) throw PickleError{absl::StrCat(what, " not ints")};
    out.push_back(item.toInt());
  }
  return out;
}

// A UTF-8 string's code points as Latin-1 bytes (`str.encode("latin1")`).
std::string Latin1(const std::string& utf8) {
  std::string out;
  for (size_t i = 0; i < utf8.size(); ++i) {
    const auto byte = static_cast<unsigned char>(utf8[i]);
    if (byte < 0x80) {
      out.push_back(static_cast<char>(byte));
    } else if ((byte & 0xE0) == 0xC0 && byte <= 0xC3 && i + 1 < utf8.size()) {
      out.push_back(static_cast<char>(((byte & 0x03) << 6) |
                                      (utf8[++i] & 0x3F)));
    } else {
      throw PickleError{"_codecs.encode of a character beyond Latin-1"};
    }
  }
  return out;
}

class Reader {
 public:
  Reader(absl::string_view pickle, const TorchPickleRecords& records)
      : pickle_(pickle), records_(records) {}

  c10::IValue Run() {
    while (true) {
      op_at_ = position_;
      const uint8_t op = U8();
      if (op == '.') {  // STOP
        return Pop().Value();
      }
      Step(op);
    }
  }

  size_t op_at() const { return op_at_; }

 private:
  // Input, bounded.
  const char* Take(size_t n) {
    if (n > pickle_.size() - position_) {
      throw PickleError{"truncated"};
    }
    const char* at = pickle_.data() + position_;
    position_ += n;
    return at;
  }
  uint64_t Little(size_t n) {
    const char* at = Take(n);
    uint64_t value = 0;
    for (size_t i = 0; i < n; ++i) {
      value |= uint64_t{static_cast<unsigned char>(at[i])} << (8 * i);
    }
    return value;
  }
  uint8_t U8() { return static_cast<uint8_t>(Little(1)); }
  std::string Bytes(uint64_t n) {
    const char* at = Take(n);
    return std::string(at, n);
  }
  std::string Line() {
    const size_t end = pickle_.find('\n', position_);
    if (end == absl::string_view::npos) throw PickleError{"truncated"};
    std::string line(pickle_.substr(position_, end - position_));
    position_ = end + 1;
    return line;
  }
  // LONG1/LONG4: little-endian two's complement, up to 8 bytes.
  int64_t Long(uint64_t n) {
    if (n > 8) throw PickleError{"an integer beyond 64 bits"};
    if (n == 0) return 0;
    const char* at = Take(n);
    uint64_t value = 0;
    for (size_t i = 0; i < n; ++i) {
      value |= uint64_t{static_cast<unsigned char>(at[i])} << (8 * i);
    }
    if (n < 8 && (static_cast<unsigned char>(at[n - 1]) & 0x80) != 0) {
      value |= ~uint64_t{0} << (8 * n);  // Sign-extend.
    }
    return static_cast<int64_t>(value);
  }

  // The stack.
  Item Pop() {
    if (stack_.empty() ||
        (!marks_.empty() && marks_.back() >= stack_.size())) {
      throw PickleError{"stack underflow"};
    }
    Item item = std::move(stack_.back());
    stack_.pop_back();
    return item;
  }
  Item& Top() {
    if (stack_.empty()) throw PickleError{"stack underflow"};
    return stack_.back();
  }
  // The items above the last MARK, which is dropped.
  std::vector<Item> PopMark() {
    if (marks_.empty()) throw PickleError{"no MARK"};
    const size_t start = marks_.back();
    marks_.pop_back();
    if (start > stack_.size()) throw PickleError{"stack underflow"};
    std::vector<Item> items(std::make_move_iterator(stack_.begin() + start),
                            std::make_move_iterator(stack_.end()));
    stack_.erase(stack_.begin() + start, stack_.end());
    return items;
  }
  void Push(c10::IValue value) {
    stack_.push_back(ValueItem(std::move(value)));
  }
  void PushTuple(std::vector<Item> items) {
    std::vector<c10::IValue> values;
    values.reserve(items.size());
    for (const Item& item : items) values.push_back(item.Value());
    Item tuple = ValueItem(c10::ivalue::Tuple::create(std::move(values)));
    if (items.size() > 1 && items[1].global == Global::kStorageType) {
      tuple.storage_type = items[1].storage_type;
    }
    stack_.push_back(std::move(tuple));
  }
  void Memo(uint64_t index) {
    memo_[index] = Top();
  }
  void Recall(uint64_t index) {
    auto found = memo_.find(index);
    if (found == memo_.end()) {
      throw PickleError{absl::StrCat("memo ", index, " unset")};
    }
    stack_.push_back(found->second);
  }
  void Append(Item& list, std::vector<Item> items) {
    if (!list.IsValue()) return;  // Appending to a placeholder.
    if (!list.value.isList()) throw PickleError{"APPEND to a non-list"};
    c10::List<c10::IValue> out = list.value.toList();
    for (const Item& item : items) out.push_back(item.Value());
  }
  void SetItems(Item& dict, std::vector<Item> items) {
    if (items.size() % 2 != 0) throw PickleError{"odd SETITEMS"};
    if (!dict.IsValue()) return;  // A placeholder's items.
    if (!dict.value.isGenericDict()) throw PickleError{"SETITEM on a non-dict"};
    c10::Dict<c10::IValue, c10::IValue> out = dict.value.toGenericDict();
    for (size_t i = 0; i < items.size(); i += 2) {
      out.insert_or_assign(items[i].Value(), items[i + 1].Value());
    }
  }

  // Calls (REDUCE, NEWOBJ).
  Item Call(const Item& callable, const Item& args) {
    if (callable.IsValue()) throw PickleError{"a call of a non-callable"};
    if (callable.global == Global::kUnknown ||
        callable.global == Global::kStorageType) {
      return GlobalItem(Global::kUnknown);
    }
    if (!args.IsValue() || !args.value.isTuple()) {
      throw PickleError{"call arguments not a tuple"};
    }
    const std::vector<c10::IValue>& a = args.value.toTupleRef().elements();
    switch (callable.global) {
      case Global::kOrderedDict: {
        c10::Dict<c10::IValue, c10::IValue> dict(c10::AnyType::get(),
                                                 c10::AnyType::get());
        if (!a.empty() && a[0].isList()) {
          for (const c10::IValue& pair : a[0].toListRef()) {
            if (!pair.isTuple() && !pair.isList()) {
              throw PickleError{"OrderedDict item not a pair"};
            }
            std::vector<c10::IValue> kv =
                pair.isTuple() ? pair.toTupleRef().elements().vec()
                               : pair.toListRef().vec();
            if (kv.size() != 2) {
              throw PickleError{"OrderedDict item not a pair"};
            }
            dict.insert_or_assign(kv[0], kv[1]);
          }
        }
        return ValueItem(dict);
      }
      case Global::kEncode: {
        if (a.empty() || !a[0].isString()) {
          throw PickleError{"_codecs.encode of a non-string"};
        }
        const std::string encoding =
            a.size() > 1 && a[1].isString() ? a[1].toStringRef() : "utf-8";
        if (encoding == "latin1" || encoding == "latin-1") {
          return ValueItem(Latin1(a[0].toStringRef()));
        }
        return ValueItem(a[0].toStringRef());  // UTF-8 as it is.
      }
      case Global::kRebuildParameter: {
        if (a.empty() || !a[0].isTensor()) {
          throw PickleError{"_rebuild_parameter of a non-tensor"};
        }
        return ValueItem(a[0]);
      }
      case Global::kRebuildTensor:
        return ValueItem(RebuildTensor(a));
      default:
        throw PickleError{"a call of a non-callable"};
    }
  }

  // _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks,
  // ...): a view of the storage, checked to lie inside it.
  at::Tensor RebuildTensor(const std::vector<c10::IValue>& a) {
    if (a.size() < 4 || !a[0].isTensor() || !a[1].isInt()) {
      throw PickleError{"_rebuild_tensor_v2 arguments"};
    }
    const at::Tensor& storage = a[0].toTensor();
    const int64_t offset = a[1].toInt();
    const std::vector<int64_t> size = Ints(a[2], "tensor size");
    const std::vector<int64_t> stride = Ints(a[3], "tensor stride");
    if (size.size() != stride.size() || offset < 0) {
      throw PickleError{"tensor size, stride or offset invalid"};
    }
    // The last element's index, overflow-checked.
    uint64_t last = static_cast<uint64_t>(offset);
    bool empty = false;
    constexpr uint64_t kLimit = uint64_t{1} << 62;
    for (size_t i = 0; i < size.size(); ++i) {
      if (size[i] < 0 || stride[i] < 0 || size[i] >= int64_t{1} << 62 ||
          stride[i] >= int64_t{1} << 62) {
        throw PickleError{"tensor size or stride invalid"};
      }
      if (size[i] == 0) empty = true;
      const unsigned __int128 extent =
          static_cast<unsigned __int128>(size[i] - (size[i] > 0)) *
          static_cast<uint64_t>(stride[i]);
      if (extent >= kLimit || last + static_cast<uint64_t>(extent) >= kLimit) {
        throw PickleError{"tensor extent too large"};
      }
      last += static_cast<uint64_t>(extent);
    }
    if (!empty && last >= static_cast<uint64_t>(storage.numel())) {
      throw PickleError{"tensor beyond its storage"};
    }
    at::Tensor result = at::empty({0}, storage.options());
    result.set_(storage.storage(), empty ? 0 : offset, size, stride);
    if (a.size() > 4 && a[4].isBool() && a[4].toBool()) {
      result.set_requires_grad(true);
    }
    return result;
  }

  // BINPERSID ('storage', storage type, key, location, numel): the record
  // as a flat CPU tensor of that type.
  Item Storage(const Item& pid) {
    if (!pid.IsValue() || !pid.value.isTuple()) {
      throw PickleError{"persistent id not a tuple"};
    }
    const std::vector<c10::IValue>& a = pid.value.toTupleRef().elements();
    if (a.size() < 5 || !a[0].isString() || a[0].toStringRef() != "storage" ||
        !a[2].isString() || !a[4].isInt() || a[4].toInt() < 0) {
      throw PickleError{"persistent id not a storage"};
    }
    if (!pid.storage_type.has_value()) {
      throw PickleError{"storage of unknown type"};
    }
    const at::ScalarType type = *pid.storage_type;
    const std::string& key = a[2].toStringRef();
    const auto numel = static_cast<uint64_t>(a[4].toInt());
    const uint64_t itemsize = c10::elementSize(type);
    if (numel > (uint64_t{1} << 62) / itemsize) {
      throw PickleError{"storage too large"};
    }
    TorchPickleRecord record;
    if (numel > 0) {
      record = records_(key);
      if (record.size < numel * itemsize) {
        throw PickleError{absl::StrCat("record data/", key, " holds ",
                                       record.size, " bytes, not ",
                                       numel * itemsize)};
      }
    }
    at::Storage storage(c10::Storage::use_byte_size_t(), numel * itemsize,
                        std::move(record.data), /*allocator=*/nullptr,
                        /*resizable=*/false);
    at::Tensor flat = at::empty({0}, at::TensorOptions().dtype(type));
    flat.set_(storage, 0, {static_cast<int64_t>(numel)}, {1});
    return ValueItem(flat);
  }

  void Step(uint8_t op) {
    switch (op) {
      case 0x80:  // PROTO
        U8();
        break;
      case 0x95:  // FRAME: the framing is ignored.
        Little(8);
        break;
      case '(':  // MARK
        marks_.push_back(stack_.size());
        break;
      case '0':  // POP
        Pop();
        break;
      case '1':  // POP_MARK
        PopMark();
        break;
      case '2':  // DUP
        stack_.push_back(Top());
        break;
      case 'N':  // NONE
        Push(c10::IValue());
        break;
      case 0x88:  // NEWTRUE
        Push(true);
        break;
      case 0x89:  // NEWFALSE
        Push(false);
        break;
      case 'J':  // BININT
        Push(int64_t{static_cast<int32_t>(Little(4))});
        break;
      case 'K':  // BININT1
        Push(static_cast<int64_t>(Little(1)));
        break;
      case 'M':  // BININT2
        Push(static_cast<int64_t>(Little(2)));
        break;
      case 0x8a:  // LONG1
        Push(Long(Little(1)));
        break;
      case 0x8b:  // LONG4
        Push(Long(Little(4)));
        break;
      case 'G': {  // BINFLOAT, big-endian
        const char* at = Take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) {
          bits = (bits << 8) | static_cast<unsigned char>(at[i]);
        }
        double value;
        std::memcpy(&value, &bits, sizeof(value));
        Push(value);
        break;
      }
      case 0x8c:  // SHORT_BINUNICODE
      case 'C':   // SHORT_BINBYTES
      case 'U':   // SHORT_BINSTRING
        Push(Bytes(Little(1)));
        break;
      case 'X':  // BINUNICODE
      case 'B':  // BINBYTES
      case 'T':  // BINSTRING
        Push(Bytes(Little(4)));
        break;
      case 0x8d:  // BINUNICODE8
      case 0x8e:  // BINBYTES8
        Push(Bytes(Little(8)));
        break;
      case ')':  // EMPTY_TUPLE
        PushTuple({});
        break;
      case 't':  // TUPLE
        PushTuple(PopMark());
        break;
      case 0x85:  // TUPLE1
      case 0x86:  // TUPLE2
      case 0x87: {  // TUPLE3
        std::vector<Item> items(op - 0x84);
        for (size_t i = items.size(); i > 0; --i) items[i - 1] = Pop();
        PushTuple(std::move(items));
        break;
      }
      case ']':  // EMPTY_LIST
        Push(c10::impl::GenericList(c10::AnyType::get()));
        break;
      case 'l': {  // LIST
        std::vector<Item> items = PopMark();
        Item list = ValueItem(c10::impl::GenericList(c10::AnyType::get()));
        Append(list, std::move(items));
        stack_.push_back(std::move(list));
        break;
      }
      case 'a': {  // APPEND
        Item item = Pop();
        std::vector<Item> items;
        items.push_back(std::move(item));
        Append(Top(), std::move(items));
        break;
      }
      case 'e': {  // APPENDS
        std::vector<Item> items = PopMark();
        Append(Top(), std::move(items));
        break;
      }
      case '}':  // EMPTY_DICT
        Push(c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get()));
        break;
      case 'd': {  // DICT
        std::vector<Item> items = PopMark();
        Item dict = ValueItem(
            c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get()));
        SetItems(dict, std::move(items));
        stack_.push_back(std::move(dict));
        break;
      }
      case 's': {  // SETITEM
        std::vector<Item> items(2);
        items[1] = Pop();
        items[0] = Pop();
        SetItems(Top(), std::move(items));
        break;
      }
      case 'u': {  // SETITEMS
        std::vector<Item> items = PopMark();
        SetItems(Top(), std::move(items));
        break;
      }
      case 'q':  // BINPUT
        Memo(Little(1));
        break;
      case 'r':  // LONG_BINPUT
        Memo(Little(4));
        break;
      case 0x94:  // MEMOIZE
        Memo(memo_.size());
        break;
      case 'h':  // BINGET
        Recall(Little(1));
        break;
      case 'j':  // LONG_BINGET
        Recall(Little(4));
        break;
      case 'c': {  // GLOBAL
        const std::string module = Line();
        const std::string name = Line();
        PushGlobal(module, name);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        Item name = Pop();
        Item module = Pop();
        if (!module.value.isString() || !name.value.isString()) {
          throw PickleError{"STACK_GLOBAL of non-strings"};
        }
        PushGlobal(module.value.toStringRef(), name.value.toStringRef());
        break;
      }
      case 'R':     // REDUCE
      case 0x81: {  // NEWOBJ
        Item args = Pop();
        Item callable = Pop();
        stack_.push_back(Call(callable, args));
        break;
      }
      case 'b': {  // BUILD
        Pop();     // The state.
        Item& object = Top();
        if (object.IsValue()) {
          // An OrderedDict's attributes (`state_dict()`'s `_metadata`):
          // the dict keeps its items, the attributes are dropped.
          if (!object.value.isGenericDict()) {
            throw PickleError{"BUILD on a value"};
          }
          break;
        }
        object = GlobalItem(Global::kUnknown);
        break;
      }
      case 'Q': {  // BINPERSID
        Item pid = Pop();
        stack_.push_back(Storage(pid));
        break;
      }
      default:
        throw PickleError{absl::StrCat("opcode 0x", absl::Hex(op),
                                       " not supported")};
    }
  }

  void PushGlobal(const std::string& module, const std::string& name) {
    Item item = GlobalItem(Resolve(module, name));
    if (item.global == Global::kStorageType) {
      item.storage_type = StorageType(name);
    }
    stack_.push_back(std::move(item));
  }

  absl::string_view pickle_;
  const TorchPickleRecords& records_;
  size_t position_ = 0;
  size_t op_at_ = 0;
  std::vector<Item> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Item> memo_;
};

}  // namespace

absl::StatusOr<c10::IValue> ReadTorchPickle(absl::string_view pickle,
                                            const TorchPickleRecords& records) {
  Reader reader(pickle, records);
  try {
    return reader.Run();
  } catch (const PickleError& e) {
    return absl::DataLossError(absl::StrCat(
        "pickle: ", e.message, " (opcode at offset ", reader.op_at(), ")"));
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    return absl::DataLossError(absl::StrCat(
        "pickle: ", what, " (opcode at offset ", reader.op_at(), ")"));
  }
}

}  // namespace accelerate::bigmodel_internal
