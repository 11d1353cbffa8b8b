// XEP-0398 user avatar to vCard-based avatar conversion, and the XEP-0153
// hash in presence, so that clients of either avatar protocol see the same
// picture.
//
//   PEP -> vCard: a publish to urn:xmpp:avatar:metadata names an image (its
//   first <info/> without a url); the matching urn:xmpp:avatar:data item,
//   if its SHA-1 is that id and its node is open (§3: a vCard is readable by
//   anyone, so a picture shown only to contacts stays out of it), becomes the
//   vCard's PHOTO. Empty metadata (the avatar withdrawn) removes the PHOTO.
//   vCard -> PEP: a vCard set with a PHOTO publishes the image to the data
//   node and then its metadata (nodes created open, as vCards are); a vCard
//   without PHOTO withdraws an avatar the metadata still announces.
//   Presence (§4): an available presence from the account gets
//   <x xmlns='vcard-temp:x:update'><photo>HASH</photo></x> unless it carries
//   a <photo/> already (an empty one means "no avatar" and is kept).
// Each direction compares hashes first, so a conversion never starts the
// other one again.

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xmpp/base64.h"

namespace nines::im {

namespace {

constexpr std::string_view kVCard = "vcard-temp";
constexpr std::string_view kUpdate = "vcard-temp:x:update";
constexpr std::string_view kConversion = "urn:xmpp:pep-vcard-conversion:0";

std::string Sha1Hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha1(), nullptr);
  std::string hex = xmpp::HexEncode(std::string_view(reinterpret_cast<const char*>(digest), length));
  std::transform(hex.begin(), hex.end(), hex.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return hex;
}

std::string WithoutSpace(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') out.push_back(c);
  }
  return out;
}

// A vCard's PHOTO: the image and its type; nullopt if it has none (or an
// EXTVAL only, which is a link, not a picture).
struct Photo {
  std::string base64;
  std::string bytes;
  std::string type;
};
std::optional<Photo> PhotoOf(const xml::Element& vcard) {
  const xml::Element* photo = vcard.Child("PHOTO", kVCard);
  if (photo == nullptr) return std::nullopt;
  Photo out;
  out.base64 = WithoutSpace(photo->ChildText("BINVAL", kVCard));
  if (out.base64.empty()) return std::nullopt;
  std::optional<std::string> bytes = xmpp::Base64Decode(out.base64);
  if (!bytes || bytes->empty()) return std::nullopt;
  out.bytes = std::move(*bytes);
  out.type = photo->ChildText("TYPE", kVCard);
  if (out.type.empty()) out.type = "image/png";
  return out;
}

}  // namespace

std::string AvatarHashOf(std::string_view metadata_xml) {
  std::optional<xml::Element> metadata = ParseElement(metadata_xml);
  if (!metadata || metadata->name() != "metadata" || metadata->ns() != kAvatarMetadata) return {};
  for (const xml::Element* info : metadata->Children()) {
    if (info->name() == "info" && !info->HasAttr("url") && !info->Attr("id").empty()) return std::string(info->Attr("id"));
  }
  return {};
}

void HubImpl::AddAvatarHash(const AccountState& st, xml::Element& presence) {
  xml::Element* x = presence.Child("x", kUpdate);
  if (x == nullptr) {
    if (st.avatar_hash.empty()) return;  // nothing to say, and no bytes spent saying it
    x = &presence.AddChild("x", std::string(kUpdate));
  }
  if (x->Child("photo", kUpdate) != nullptr) return;  // the client's word stands (an empty one: no avatar)
  xml::Element& photo = x->AddChild("photo", std::string(kUpdate));
  if (!st.avatar_hash.empty()) photo.AddText(st.avatar_hash);
}

void HubImpl::LoadAvatarHash(AccountState& st) {
  st.avatar_known = true;  // one read at a time; a publish meanwhile sets it anyway
  ++st.busy;
  store_->LastPepItems({st.user}, {std::string(kAvatarMetadata)}, {},
                       store::Reply<std::vector<store::PepLastItem>>(
                           loop(st.home).executor(),
                           [this, home = st.home, bare = st.bare, changes = st.avatar_changes](
                               Result<std::vector<store::PepLastItem>> r) {
                             AccountState* st = FindAccount(home, bare);
                             if (st == nullptr) return;
                             if (st->avatar_changes == changes) {
                               if (r.ok() && !r->empty()) st->avatar_hash = AvatarHashOf(r->front().item.xml);
                               if (!r.ok()) st->avatar_known = false;  // the next bind tries again
                             }
                             Release(home, bare);
                           }));
}

// XEP-0398, PEP -> vCard: the vCard with its PHOTO replaced by the avatar
// (none if `hash` is empty). A read-modify-write, so it waits for any other
// vCard write in flight, and the next waits for it (AccountState::vcard_writes).
void HubImpl::SetVCardPhoto(AccountState& st, std::string hash, std::string base64, std::string type) {
  if (st.vcard_writes > 0) {
    st.vcard_waiting.push_back([this, hash = std::move(hash), base64 = std::move(base64),
                                type = std::move(type)](AccountState& st) mutable {
      SetVCardPhoto(st, std::move(hash), std::move(base64), std::move(type));
    });
    return;
  }
  ++st.vcard_writes;
  ++st.busy;
  store_->GetVCard(
      st.user,
      store::Reply<std::string>(loop(st.home).executor(), [this, home = st.home, bare = st.bare, hash, base64,
                                                           type](Result<std::string> stored) {
        AccountState* st = FindAccount(home, bare);
        if (st == nullptr) return;
        auto finish = [&] {
          AfterVCardWrite(*st);
          Release(home, bare);
        };
        std::optional<xml::Element> vcard =
            stored.ok() ? ParseElement(*stored)
                        : std::optional<xml::Element>(xml::Element("vCard", std::string(kVCard)));
        if (!vcard || (!stored.ok() && stored.error().code != Errc::kNotFound)) {
          finish();
          return;
        }
        std::optional<Photo> current = PhotoOf(*vcard);
        const std::string current_hash = current ? Sha1Hex(current->bytes) : std::string();
        if (current_hash == hash) {  // already so (this change came from the vCard)
          finish();
          return;
        }
        vcard->RemoveChildren("PHOTO", kVCard);
        if (!hash.empty()) {
          xml::Element& photo = vcard->AddChild("PHOTO", std::string(kVCard));
          photo.AddChild("TYPE", std::string(kVCard)).AddText(type);
          photo.AddChild("BINVAL", std::string(kVCard)).AddText(base64);
        }
        std::string xml = vcard->Serialize();
        if (static_cast<int64_t>(xml.size()) > ConfigOn(home).limits.vcard_size) {
          spdlog::info("im: the avatar of {} is larger than limits.vcard_size; the vCard keeps its photo",
                       bare);
          finish();
          return;
        }
        store_->SetVCard(st->user, std::move(xml),
                         store::Reply<void>(loop(home).executor(), [this, home, bare](const Result<void>& r) {
                           if (!r.ok())
                             spdlog::warn("im: storing the converted vCard of {} failed: {}", bare,
                                          r.error().message);
                           if (AccountState* st = FindAccount(home, bare)) AfterVCardWrite(*st);
                           Release(home, bare);
                         }));
      }));
}

void HubImpl::AfterVCardWrite(AccountState& st) {
  if (--st.vcard_writes > 0) return;
  // In order; the first to write makes the rest queue up again behind it.
  auto waiting = std::move(st.vcard_waiting);
  st.vcard_waiting.clear();
  for (auto& fn : waiting) fn(st);
}

void HubImpl::AfterPepPublish(AccountState& st, const std::string& node, const store::PepItem& item) {
  if (node != kAvatarMetadata) return;
  std::string hash = AvatarHashOf(item.xml);
  st.avatar_hash = hash;
  st.avatar_known = true;
  ++st.avatar_changes;
  // PEP -> vCard: the picture the metadata names, from the data node.
  auto it = st.pep_nodes.find(kAvatarData);
  if (!hash.empty() && (it == st.pep_nodes.end() || it->second.access_model != "open")) return;
  if (hash.empty()) {
    SetVCardPhoto(st, {}, {}, {});
    return;
  }
  std::string type;
  if (std::optional<xml::Element> metadata = ParseElement(item.xml)) {
    for (const xml::Element* info : metadata->Children()) {
      if (info->name() == "info" && info->Attr("id") == hash) {
        type = std::string(info->Attr("type"));
        break;
      }
    }
  }
  ++st.busy;
  store_->GetPepItems(
      st.user, std::string(kAvatarData), {hash}, 1,
      store::Reply<std::vector<store::PepItem>>(
          loop(st.home).executor(), [this, home = st.home, bare = st.bare, hash,
                                     type](Result<std::vector<store::PepItem>> items) mutable {
            AccountState* st = FindAccount(home, bare);
            if (st == nullptr) return;
            if (items.ok() && !items->empty()) {
              std::optional<xml::Element> data = ParseElement(items->front().xml);
              std::string base64 = data ? WithoutSpace(data->Text()) : std::string();
              std::optional<std::string> bytes = xmpp::Base64Decode(base64);
              // §3: only a picture whose hash is the id it is announced under.
              if (bytes && Sha1Hex(*bytes) == hash)
                SetVCardPhoto(*st, hash, std::move(base64), type.empty() ? "image/png" : type);
            }
            Release(home, bare);
          }));
}

void HubImpl::AfterVCardSet(AccountState& st, const xml::Element& vcard) {
  std::optional<Photo> photo = PhotoOf(vcard);
  std::string hash = photo ? Sha1Hex(photo->bytes) : std::string();
  if (hash == st.avatar_hash) return;  // PEP says so already (or this vCard came from PEP)
  WithPep(st, [this, photo = std::move(photo), hash = std::move(hash)](AccountState& st, bool ok) mutable {
    if (!ok) return;
    const Config& config = ConfigOn(st.home);
    auto node_for = [&](std::string_view name) {
      auto it = st.pep_nodes.find(name);
      if (it != st.pep_nodes.end()) return it->second;
      store::PepNode node;
      node.username = st.user;
      node.node = std::string(name);
      node.access_model = "open";  // as readable as the vCard it comes from
      return node;
    };
    store::PepItem metadata;
    metadata.id = hash.empty() ? std::string("current") : hash;
    metadata.publisher = st.bare;
    if (!photo) {
      metadata.xml = "<metadata xmlns='urn:xmpp:avatar:metadata'/>";  // XEP-0084 §4.5: no avatar
      PepPublish(st, node_for(kAvatarMetadata), std::move(metadata), [](AccountState&, const Result<void>&) {});
      return;
    }
    std::string data_xml = "<data xmlns='urn:xmpp:avatar:data'>" + photo->base64 + "</data>";
    if (static_cast<int64_t>(data_xml.size()) > config.limits.pep_item_size) {
      spdlog::info("im: the vCard photo of {} is larger than limits.pep_item_size; not published as an avatar", st.bare);
      return;
    }
    metadata.xml = "<metadata xmlns='urn:xmpp:avatar:metadata'><info";
    AppendAttr(metadata.xml, "id", hash);
    AppendAttr(metadata.xml, "bytes", std::to_string(photo->bytes.size()));
    AppendAttr(metadata.xml, "type", photo->type);
    metadata.xml.append("/></metadata>");
    store::PepItem data;
    data.id = hash;
    data.publisher = st.bare;
    data.xml = std::move(data_xml);
    // The data first: a client told of the metadata fetches it at once.
    PepPublish(st, node_for(kAvatarData), std::move(data),
               [this, node = node_for(kAvatarMetadata), metadata = std::move(metadata)](
                   AccountState& st, const Result<void>& r) mutable {
                 if (r.ok()) PepPublish(st, std::move(node), std::move(metadata), [](AccountState&, const Result<void>&) {});
               });
  });
}

void HubImpl::RegisterAvatars() { registry_.AddFeature(kScopeSelf, std::string(kConversion)); }

}  // namespace nines::im
