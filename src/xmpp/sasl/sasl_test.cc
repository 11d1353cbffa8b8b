#include "xmpp/sasl/sasl.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "xmpp/sasl/crypto.h"
#include "xmpp/sasl/scram_mechanism.h"

namespace nines::xmpp::sasl {
namespace {

using namespace std::string_literals;
using Kind = StepResult::Kind;

// ---------------------------------------------------------------------------
// An independent SCRAM client, written directly against OpenSSL so the server
// is not checked against its own helpers.

const EVP_MD* Md(Hash hash) { return hash == Hash::kSha1 ? EVP_sha1() : EVP_sha256(); }

std::string B64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string UnB64(std::string_view text) {
  std::string out(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  EXPECT_GE(n, 0);
  size_t padding = 0;
  if (!text.empty() && text.back() == '=') ++padding;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++padding;
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

std::string ClientHmac(Hash hash, std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(Md(hash), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &size);
  return std::string(reinterpret_cast<char*>(out), size);
}

std::string ClientDigest(Hash hash, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), out, &size, Md(hash), nullptr);
  return std::string(reinterpret_cast<char*>(out), size);
}

std::string RandomText(size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes));
  return B64(raw);
}

// attr=value pairs of a server message.
std::map<char, std::string> Attributes(std::string_view message) {
  std::map<char, std::string> out;
  size_t start = 0;
  while (start <= message.size()) {
    size_t comma = message.find(',', start);
    if (comma == std::string_view::npos) comma = message.size();
    std::string_view part = message.substr(start, comma - start);
    if (part.size() >= 2 && part[1] == '=') out[part[0]] = std::string(part.substr(2));
    start = comma + 1;
  }
  return out;
}

class ScramClient {
 public:
  // `gs2_header` e.g. "n,," or "p=tls-exporter,,"; `cb_data` is appended to it
  // in c= when the header starts with 'p'.
  ScramClient(Hash hash, std::string_view username_escaped, std::string password,
              std::string gs2_header = "n,,", std::string cb_data = "",
              std::string_view client_nonce = RandomText(18))
      : hash_(hash),
        password_(std::move(password)),
        gs2_header_(std::move(gs2_header)),
        cb_data_(std::move(cb_data)),
        bare_("n=" + std::string(username_escaped) + ",r=" + std::string(client_nonce)) {}

  std::string First() const { return gs2_header_ + bare_; }

  // Computes client-final for `server_first`; c= may be overridden.
  std::string Final(std::string_view server_first,
                    const std::optional<std::string>& channel_binding = std::nullopt) {
    auto attrs = Attributes(server_first);
    std::string salt = UnB64(attrs['s']);
    int iterations = std::stoi(attrs['i']);
    std::string salted(EVP_MD_get_size(Md(hash_)), '\0');
    PKCS5_PBKDF2_HMAC(password_.data(), static_cast<int>(password_.size()),
                      reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                      iterations, Md(hash_), static_cast<int>(salted.size()),
                      reinterpret_cast<unsigned char*>(salted.data()));
    std::string client_key = ClientHmac(hash_, salted, "Client Key");
    std::string stored_key = ClientDigest(hash_, client_key);
    std::string server_key = ClientHmac(hash_, salted, "Server Key");
    std::string cbind = gs2_header_;
    if (gs2_header_[0] == 'p') cbind += cb_data_;
    std::string without_proof = "c=" + channel_binding.value_or(B64(cbind)) + ",r=" + attrs['r'];
    std::string auth_message = bare_ + "," + std::string(server_first) + "," + without_proof;
    std::string proof = ClientHmac(hash_, stored_key, auth_message);
    for (size_t i = 0; i < proof.size(); ++i) proof[i] = static_cast<char>(proof[i] ^ client_key[i]);
    expected_server_final_ = "v=" + B64(ClientHmac(hash_, server_key, auth_message));
    return without_proof + ",p=" + B64(proof);
  }

  const std::string& expected_server_final() const { return expected_server_final_; }

 private:
  Hash hash_;
  std::string password_;
  std::string gs2_header_;
  std::string cb_data_;
  std::string bare_;
  std::string expected_server_final_;
};

// ---------------------------------------------------------------------------

const std::string kExporter = "0123456789abcdef0123456789ABCDEF";  // 32 bytes of "tls-exporter" data

ChannelBinding PlusBinding() {
  ChannelBinding binding;
  binding.tls = true;
  binding.tls_exporter = kExporter;
  binding.server_offers_plus = true;
  return binding;
}

store::ScramKeys Keys(Hash hash, std::string_view password) {
  Result<store::ScramKeys> keys = DeriveKeys(hash, password, 4096);
  EXPECT_TRUE(keys.ok());
  return keys.ok() ? *keys : store::ScramKeys{};
}

std::string_view HashSuffix(Hash hash) { return hash == Hash::kSha1 ? "SHA-1" : "SHA-256"; }

std::string MechName(Hash hash, bool plus) {
  return "SCRAM-" + std::string(HashSuffix(hash)) + (plus ? "-PLUS" : "");
}

// Drives a whole exchange: client-first as initial response, keys, client-final.
StepResult RunScram(Mechanism& mech, ScramClient& client, const store::ScramKeys* keys,
                    const std::optional<std::string>& channel_binding = std::nullopt) {
  StepResult first = mech.Start(client.First());
  if (first.kind != Kind::kNeedKeys) return first;
  StepResult challenge = mech.ProvideKeys(keys);
  if (challenge.kind != Kind::kChallenge) return challenge;
  return mech.Step(client.Final(challenge.data, channel_binding));
}

::testing::AssertionResult IsFailure(const StepResult& result, Failure failure) {
  if (result.kind == Kind::kFailure && result.failure == failure) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "kind " << static_cast<int>(result.kind) << ", failure '" << FailureCondition(result.failure)
         << "', wanted '" << FailureCondition(failure) << "'";
}
#define EXPECT_FAILURE(result, failure) EXPECT_TRUE(IsFailure((result), (failure)))

// --- RFC vectors -----------------------------------------------------------

TEST(ScramTest, Rfc5802Sha1Example) {
  Result<store::ScramKeys> keys = DeriveKeysWithSalt(Hash::kSha1, "pencil", UnB64("QSXCR+Q6sek8bf92"), 4096);
  ASSERT_TRUE(keys.ok());
  auto mech = CreateMechanismForTesting("SCRAM-SHA-1", ChannelBinding{}, "3rfcNHYJY1ZVvWVs7j");
  ASSERT_NE(mech, nullptr);

  StepResult r = mech->Start("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"s);
  ASSERT_EQ(r.kind, Kind::kNeedKeys);
  EXPECT_EQ(r.username, "user");
  EXPECT_EQ(r.key_hash, Hash::kSha1);

  r = mech->ProvideKeys(&*keys);
  ASSERT_EQ(r.kind, Kind::kChallenge);
  EXPECT_EQ(r.data, "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096");

  r = mech->Step("c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
  ASSERT_EQ(r.kind, Kind::kSuccess);
  EXPECT_EQ(r.data, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
  EXPECT_EQ(r.username, "user");
}

TEST(ScramTest, Rfc7677Sha256Example) {
  Result<store::ScramKeys> keys =
      DeriveKeysWithSalt(Hash::kSha256, "pencil", UnB64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
  ASSERT_TRUE(keys.ok());
  auto mech = CreateMechanismForTesting("SCRAM-SHA-256", ChannelBinding{}, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
  ASSERT_NE(mech, nullptr);

  StepResult r = mech->Start("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"s);
  ASSERT_EQ(r.kind, Kind::kNeedKeys);
  EXPECT_EQ(r.key_hash, Hash::kSha256);
  r = mech->ProvideKeys(&*keys);
  ASSERT_EQ(r.kind, Kind::kChallenge);
  EXPECT_EQ(r.data, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  r = mech->Step(
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  ASSERT_EQ(r.kind, Kind::kSuccess);
  EXPECT_EQ(r.data, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

TEST(ScramTest, Rfc5802ExampleWithWrongPasswordKeysFails) {
  Result<store::ScramKeys> keys = DeriveKeysWithSalt(Hash::kSha1, "pencil2", UnB64("QSXCR+Q6sek8bf92"), 4096);
  ASSERT_TRUE(keys.ok());
  auto mech = CreateMechanismForTesting("SCRAM-SHA-1", ChannelBinding{}, "3rfcNHYJY1ZVvWVs7j");
  ASSERT_EQ(mech->Start("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"s).kind, Kind::kNeedKeys);
  ASSERT_EQ(mech->ProvideKeys(&*keys).kind, Kind::kChallenge);
  EXPECT_FAILURE(
      mech->Step("c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="),
      Failure::kNotAuthorized);
}

// --- Round trips with the test client ---------------------------------------

class ScramRoundTrip : public ::testing::TestWithParam<std::tuple<Hash, bool>> {};

TEST_P(ScramRoundTrip, CorrectPasswordSucceedsAndServerSignatureVerifies) {
  auto [hash, plus] = GetParam();
  store::ScramKeys keys = Keys(hash, "correct horse");
  auto mech = CreateMechanism(MechName(hash, plus), PlusBinding());
  ASSERT_NE(mech, nullptr);
  ScramClient client(hash, "juliet", "correct horse", plus ? "p=tls-exporter,," : "n,,", kExporter);
  StepResult r = RunScram(*mech, client, &keys);
  ASSERT_EQ(r.kind, Kind::kSuccess) << FailureCondition(r.failure);
  EXPECT_EQ(r.data, client.expected_server_final());
  EXPECT_EQ(r.username, "juliet");
}

TEST_P(ScramRoundTrip, WrongPasswordIsNotAuthorized) {
  auto [hash, plus] = GetParam();
  store::ScramKeys keys = Keys(hash, "correct horse");
  auto mech = CreateMechanism(MechName(hash, plus), PlusBinding());
  ScramClient client(hash, "juliet", "battery staple", plus ? "p=tls-exporter,," : "n,,", kExporter);
  EXPECT_FAILURE(RunScram(*mech, client, &keys), Failure::kNotAuthorized);
}

TEST_P(ScramRoundTrip, UnknownUserGetsChallengeThenNotAuthorized) {
  auto [hash, plus] = GetParam();
  auto mech = CreateMechanism(MechName(hash, plus), PlusBinding());
  ScramClient client(hash, "nobody", "whatever", plus ? "p=tls-exporter,," : "n,,", kExporter);
  ASSERT_EQ(mech->Start(client.First()).kind, Kind::kNeedKeys);
  StepResult challenge = mech->ProvideKeys(nullptr);
  ASSERT_EQ(challenge.kind, Kind::kChallenge);
  auto attrs = Attributes(challenge.data);
  EXPECT_EQ(UnB64(attrs['s']).size(), 16u);
  EXPECT_EQ(attrs['i'], "4096");
  EXPECT_FAILURE(mech->Step(client.Final(challenge.data)), Failure::kNotAuthorized);
}

INSTANTIATE_TEST_SUITE_P(AllScram, ScramRoundTrip,
                         ::testing::Combine(::testing::Values(Hash::kSha1, Hash::kSha256), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == Hash::kSha1 ? "Sha1" : "Sha256") +
                                  (std::get<1>(info.param) ? "Plus" : "");
                         });

TEST(ScramTest, NoInitialResponseGivesEmptyChallengeThenWorks) {
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  StepResult r = mech->Start(std::nullopt);
  ASSERT_EQ(r.kind, Kind::kChallenge);
  EXPECT_EQ(r.data, "");
  ScramClient client(Hash::kSha256, "romeo", "pw");
  r = mech->Step(client.First());
  ASSERT_EQ(r.kind, Kind::kNeedKeys);
  r = mech->ProvideKeys(&keys);
  ASSERT_EQ(r.kind, Kind::kChallenge);
  r = mech->Step(client.Final(r.data));
  EXPECT_EQ(r.kind, Kind::kSuccess);
}

TEST(ScramTest, EmptyInitialResponseIsMalformed) {
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  EXPECT_FAILURE(mech->Start(""s), Failure::kMalformedRequest);
}

TEST(ScramTest, ServerNonceIsRandomAndLong) {
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  std::string nonces[2];
  for (std::string& nonce : nonces) {
    auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
    ASSERT_EQ(mech->Start("n,,n=a,r=abc"s).kind, Kind::kNeedKeys);
    StepResult r = mech->ProvideKeys(&keys);
    nonce = Attributes(r.data)['r'];
    ASSERT_EQ(nonce.substr(0, 3), "abc");
    nonce = nonce.substr(3);
    EXPECT_GE(UnB64(nonce).size(), 24u);
  }
  EXPECT_NE(nonces[0], nonces[1]);
}

TEST(ScramTest, UsernameIsNormalisedCaseMapped) {
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  ScramClient client(Hash::kSha256, "JuLiEt", "pw");
  StepResult r = mech->Start(client.First());
  ASSERT_EQ(r.kind, Kind::kNeedKeys);
  EXPECT_EQ(r.username, "juliet");
  r = mech->ProvideKeys(&keys);
  r = mech->Step(client.Final(r.data));
  ASSERT_EQ(r.kind, Kind::kSuccess);
  EXPECT_EQ(r.username, "juliet");
}

TEST(ScramTest, UsernameRejectedByPrecisIsNotAuthorized) {
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  // A space is not in the IdentifierClass.
  EXPECT_FAILURE(mech->Start("n,,n=ju liet,r=abc"s), Failure::kNotAuthorized);
  mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  EXPECT_FAILURE(mech->Start("n,,n=\xff\xfe,r=abc"s), Failure::kNotAuthorized);
}

TEST(ScramTest, UnknownUserFakeSaltIsStablePerUserAndDiffersBetweenUsers) {
  SetUnknownUserSecret("test secret");
  auto salt_for = [](std::string_view mechanism, std::string_view user) {
    auto mech = CreateMechanism(mechanism, ChannelBinding{});
    EXPECT_EQ(mech->Start("n,,n=" + std::string(user) + ",r=abc").kind, Kind::kNeedKeys);
    return Attributes(mech->ProvideKeys(nullptr).data)['s'];
  };
  EXPECT_EQ(salt_for("SCRAM-SHA-256", "ghost"), salt_for("SCRAM-SHA-256", "ghost"));
  EXPECT_EQ(salt_for("SCRAM-SHA-256", "ghost"), salt_for("SCRAM-SHA-256", "GHOST"));  // same account name
  EXPECT_NE(salt_for("SCRAM-SHA-256", "ghost"), salt_for("SCRAM-SHA-256", "phantom"));
  EXPECT_NE(salt_for("SCRAM-SHA-256", "ghost"), salt_for("SCRAM-SHA-1", "ghost"));
  std::string before = salt_for("SCRAM-SHA-256", "ghost");
  SetUnknownUserSecret("another secret", 10000);
  EXPECT_NE(salt_for("SCRAM-SHA-256", "ghost"), before);
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  ASSERT_EQ(mech->Start("n,,n=ghost,r=abc"s).kind, Kind::kNeedKeys);
  EXPECT_EQ(Attributes(mech->ProvideKeys(nullptr).data)['i'], "10000");
  SetUnknownUserSecret("test secret", 4096);
}

TEST(ScramTest, UnusableKeysBehaveLikeUnknownUser) {
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  keys.stored_key.pop_back();  // wrong length for SHA-256
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  ScramClient client(Hash::kSha256, "romeo", "pw");
  EXPECT_FAILURE(RunScram(*mech, client, &keys), Failure::kNotAuthorized);

  // SHA-256 keys handed to a SHA-1 mechanism.
  keys = Keys(Hash::kSha256, "pw");
  mech = CreateMechanism("SCRAM-SHA-1", ChannelBinding{});
  ScramClient client1(Hash::kSha1, "romeo", "pw");
  EXPECT_FAILURE(RunScram(*mech, client1, &keys), Failure::kNotAuthorized);
}

// --- Channel binding --------------------------------------------------------

TEST(ScramChannelBindingTest, PlusWithWrongBindingDataFails) {
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  auto mech = CreateMechanism("SCRAM-SHA-256-PLUS", PlusBinding());
  ScramClient client(Hash::kSha256, "romeo", "pw", "p=tls-exporter,,", "a different channel's exporter!!");
  EXPECT_FAILURE(RunScram(*mech, client, &keys), Failure::kNotAuthorized);
}

TEST(ScramChannelBindingTest, PlusWithBindingDataMissingFromCFails) {
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  auto mech = CreateMechanism("SCRAM-SHA-256-PLUS", PlusBinding());
  ScramClient client(Hash::kSha256, "romeo", "pw", "p=tls-exporter,,", kExporter);
  EXPECT_FAILURE(RunScram(*mech, client, &keys, B64("p=tls-exporter,,")), Failure::kNotAuthorized);
}

TEST(ScramChannelBindingTest, PlusRequiresPFlag) {
  for (std::string header : {"n,,", "y,,"}) {
    auto mech = CreateMechanism("SCRAM-SHA-256-PLUS", PlusBinding());
    EXPECT_FAILURE(mech->Start(header + "n=romeo,r=abc"), Failure::kNotAuthorized);
  }
}

TEST(ScramChannelBindingTest, UnsupportedBindingTypeFails) {
  for (std::string type : {"tls-unique", "tls-server-end-point", "tls-exporter2"}) {
    auto mech = CreateMechanism("SCRAM-SHA-256-PLUS", PlusBinding());
    EXPECT_FAILURE(mech->Start("p=" + type + ",,n=romeo,r=abc"), Failure::kNotAuthorized) << type;
  }
}

TEST(ScramChannelBindingTest, PFlagOnNonPlusMechanismFails) {
  auto mech = CreateMechanism("SCRAM-SHA-256", PlusBinding());
  EXPECT_FAILURE(mech->Start("p=tls-exporter,,n=romeo,r=abc"s), Failure::kNotAuthorized);
  mech = CreateMechanism("SCRAM-SHA-1", ChannelBinding{});
  EXPECT_FAILURE(mech->Start("p=tls-exporter,,n=romeo,r=abc"s), Failure::kNotAuthorized);
}

TEST(ScramChannelBindingTest, YFlagFailsWhenServerOfferedPlus) {
  auto mech = CreateMechanism("SCRAM-SHA-256", PlusBinding());
  EXPECT_FAILURE(mech->Start("y,,n=romeo,r=abc"s), Failure::kNotAuthorized);
}

TEST(ScramChannelBindingTest, YFlagSucceedsWhenServerDidNotOfferPlus) {
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  ChannelBinding binding;
  binding.tls = true;
  binding.tls_exporter = kExporter;  // available, but the operator did not advertise -PLUS
  binding.server_offers_plus = false;
  auto mech = CreateMechanism("SCRAM-SHA-256", binding);
  ScramClient client(Hash::kSha256, "romeo", "pw", "y,,");
  StepResult r = RunScram(*mech, client, &keys);
  EXPECT_EQ(r.kind, Kind::kSuccess) << FailureCondition(r.failure);
}

TEST(ScramChannelBindingTest, CMustRepeatTheGs2Header) {
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  ScramClient client(Hash::kSha256, "romeo", "pw", "n,,");
  EXPECT_FAILURE(RunScram(*mech, client, &keys, B64("y,,")), Failure::kNotAuthorized);
  // Binding data on a non-binding exchange.
  mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  ScramClient client2(Hash::kSha256, "romeo", "pw", "n,,");
  EXPECT_FAILURE(RunScram(*mech, client2, &keys, B64("n,," + kExporter)), Failure::kNotAuthorized);
}

TEST(ScramChannelBindingTest, PlusNeedsExporterData) {
  ChannelBinding binding;
  binding.tls = true;
  EXPECT_EQ(CreateMechanism("SCRAM-SHA-256-PLUS", binding), nullptr);
  EXPECT_EQ(CreateMechanism("SCRAM-SHA-1-PLUS", binding), nullptr);
  EXPECT_NE(CreateMechanism("SCRAM-SHA-256", binding), nullptr);
}

// --- Authorization identity -------------------------------------------------

TEST(ScramAuthzidTest, AuthzidEqualToUserIsAccepted) {
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  for (std::string header : {"n,a=romeo,", "n,a=Romeo,"}) {
    auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
    ScramClient client(Hash::kSha256, "Romeo", "pw", header);
    StepResult r = RunScram(*mech, client, &keys);
    EXPECT_EQ(r.kind, Kind::kSuccess) << header << " " << FailureCondition(r.failure);
    EXPECT_EQ(r.username, "romeo");
  }
}

TEST(ScramAuthzidTest, OtherAuthzidIsInvalid) {
  for (std::string authzid : {"juliet", "romeo@example.com", "romeo=2Cjuliet", "romeo=3D"}) {
    auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
    EXPECT_FAILURE(mech->Start("n,a=" + authzid + ",n=romeo,r=abc"), Failure::kInvalidAuthzid) << authzid;
  }
}

TEST(ScramAuthzidTest, AuthzidIsPartOfTheBoundHeader) {
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  ScramClient client(Hash::kSha256, "romeo", "pw", "n,a=romeo,");
  // c= claims the header had no authzid.
  EXPECT_FAILURE(RunScram(*mech, client, &keys, B64("n,,")), Failure::kNotAuthorized);
}

// --- Malformed messages -----------------------------------------------------

TEST(ScramMalformedTest, ClientFirst) {
  const std::string cases[] = {
      "n,,n=romeo",                              // missing r=
      "n,,r=abc,n=romeo",                        // attributes out of order
      "n,,m=ext,n=romeo,r=abc",                  // reserved m= must fail
      "n,,n=romeo,r=abc,m=ext",                  // m= as a trailing extension
      "x,,n=romeo,r=abc",                        // unknown gs2 flag
      "n=romeo,r=abc",                           // no gs2 header
      "n,n=romeo,r=abc",                         // gs2 header with one comma
      "p,,n=romeo,r=abc",                        // p without a type
      "p=,,n=romeo,r=abc",                       // p with an empty type
      "p=tls exporter,,n=romeo,r=abc",           // bad cb-name
      "n,b=romeo,n=romeo,r=abc",                 // authzid without a=
      "n,a=,n=romeo,r=abc",                      // empty authzid value
      "n,,n=,r=abc",                             // empty username
      "n,,n=romeo,r=",                           // empty nonce
      "n,,n=romeo,r=a\x01z",                     // non-printable nonce
      "n,,n=romeo,r=abc,",                       // trailing comma
      "n,,n=romeo,r=abc,x",                      // extension without value
      "n,,n=romeo,r=abc,1=x",                    // extension name not ALPHA
      "n,,n=romeo,,r=abc",                       // empty attribute
      "N,,n=romeo,r=abc",                        // flags are case-sensitive
      "n,,n=rom\0eo,r=abc"s,                     // NUL
      "n,,n=romeo,r=" + std::string(9000, 'a'),  // too long
  };
  for (const std::string& message : cases) {
    auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
    EXPECT_FAILURE(mech->Start(message), Failure::kMalformedRequest) << message;
  }
}

TEST(ScramMalformedTest, UnknownExtensionsAreIgnored) {
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  // The test client puts no extension in; craft the first message by hand
  // and compute the final with a client whose bare matches.
  ScramClient client(Hash::kSha256, "romeo", "pw", "n,,", "", "abc,x=ext");
  StepResult r = RunScram(*mech, client, &keys);
  EXPECT_EQ(r.kind, Kind::kSuccess) << FailureCondition(r.failure);
}

class ScramFinalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keys_ = Keys(Hash::kSha256, "pw");
    mech_ = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
    ASSERT_EQ(mech_->Start(client_.First()).kind, Kind::kNeedKeys);
    StepResult r = mech_->ProvideKeys(&keys_);
    ASSERT_EQ(r.kind, Kind::kChallenge);
    server_first_ = r.data;
    good_final_ = client_.Final(server_first_);
    auto attrs = Attributes(good_final_);
    nonce_ = attrs['r'];
    proof_ = attrs['p'];
  }

  store::ScramKeys keys_;
  std::unique_ptr<Mechanism> mech_;
  ScramClient client_{Hash::kSha256, "romeo", "pw"};
  std::string server_first_, good_final_, nonce_, proof_;
};

TEST_F(ScramFinalTest, GoodFinalSucceeds) { EXPECT_EQ(mech_->Step(good_final_).kind, Kind::kSuccess); }

TEST_F(ScramFinalTest, MissingProof) {
  EXPECT_FAILURE(mech_->Step("c=biws,r=" + nonce_), Failure::kMalformedRequest);
}

TEST_F(ScramFinalTest, ProofNotLast) {
  EXPECT_FAILURE(mech_->Step("c=biws,p=" + proof_ + ",r=" + nonce_), Failure::kMalformedRequest);
}

TEST_F(ScramFinalTest, MissingChannelBinding) {
  EXPECT_FAILURE(mech_->Step("r=" + nonce_ + ",p=" + proof_), Failure::kMalformedRequest);
}

TEST_F(ScramFinalTest, BadBase64Proof) {
  EXPECT_FAILURE(mech_->Step("c=biws,r=" + nonce_ + ",p=***"), Failure::kMalformedRequest);
}

TEST_F(ScramFinalTest, ProofOfWrongLength) {
  EXPECT_FAILURE(mech_->Step("c=biws,r=" + nonce_ + ",p=" + B64("short")), Failure::kMalformedRequest);
}

TEST_F(ScramFinalTest, BadBase64ChannelBinding) {
  EXPECT_FAILURE(mech_->Step("c=bi=s,r=" + nonce_ + ",p=" + proof_), Failure::kMalformedRequest);
}

TEST_F(ScramFinalTest, ReservedMExtension) {
  EXPECT_FAILURE(mech_->Step("c=biws,r=" + nonce_ + ",m=x,p=" + proof_), Failure::kMalformedRequest);
}

TEST_F(ScramFinalTest, WrongNonce) {
  // Only the client part of the nonce: the server's part is missing.
  std::string client_nonce = Attributes(client_.First().substr(3))['r'];
  std::string message = client_.Final(server_first_);
  size_t at = message.find(nonce_);
  message.replace(at, nonce_.size(), client_nonce);
  EXPECT_FAILURE(mech_->Step(message), Failure::kNotAuthorized);
}

TEST_F(ScramFinalTest, TamperedProof) {
  std::string proof = UnB64(proof_);
  proof[0] ^= 1;
  EXPECT_FAILURE(mech_->Step("c=biws,r=" + nonce_ + ",p=" + B64(proof)), Failure::kNotAuthorized);
}

TEST_F(ScramFinalTest, NothingAfterTheEnd) {
  ASSERT_EQ(mech_->Step(good_final_).kind, Kind::kSuccess);
  EXPECT_FAILURE(mech_->Step(good_final_), Failure::kMalformedRequest);
  EXPECT_FAILURE(mech_->ProvideKeys(&keys_), Failure::kTemporaryAuthFailure);
}

TEST(ScramStateTest, OutOfOrderCallsFail) {
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  ASSERT_EQ(mech->Start("n,,n=romeo,r=abc"s).kind, Kind::kNeedKeys);
  // A response while keys are being fetched.
  EXPECT_FAILURE(mech->Step("c=biws,r=abc,p=AAAA"), Failure::kMalformedRequest);

  mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  EXPECT_FAILURE(mech->ProvideKeys(&keys), Failure::kTemporaryAuthFailure);

  mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  ASSERT_EQ(mech->Start(std::nullopt).kind, Kind::kChallenge);
  EXPECT_FAILURE(mech->Start(std::nullopt), Failure::kMalformedRequest);
}

// --- SASLname ---------------------------------------------------------------

TEST(SaslNameTest, Decode) {
  using internal::DecodeSaslName;
  EXPECT_EQ(DecodeSaslName("romeo"), "romeo");
  EXPECT_EQ(DecodeSaslName("a=2Cb"), "a,b");
  EXPECT_EQ(DecodeSaslName("a=3Db"), "a=b");
  EXPECT_EQ(DecodeSaslName("=2C=3D"), ",=");
  EXPECT_EQ(DecodeSaslName("=3D2C"), "=2C");  // decoded once, not recursively
  EXPECT_EQ(DecodeSaslName(""), std::nullopt);
  EXPECT_EQ(DecodeSaslName("a=ZZ"), std::nullopt);
  EXPECT_EQ(DecodeSaslName("a=2c"), std::nullopt);  // hex is upper-case
  EXPECT_EQ(DecodeSaslName("a=2"), std::nullopt);
  EXPECT_EQ(DecodeSaslName("a="), std::nullopt);
  EXPECT_EQ(DecodeSaslName("a,b"), std::nullopt);
  EXPECT_EQ(DecodeSaslName("a\0b"s), std::nullopt);
}

TEST(SaslNameTest, EscapedUsernameRoundTrip) {
  store::ScramKeys keys = Keys(Hash::kSha256, "pw");
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  ScramClient client(Hash::kSha256, "a=2Cb=3Dc", "pw");
  StepResult r = mech->Start(client.First());
  ASSERT_EQ(r.kind, Kind::kNeedKeys);
  EXPECT_EQ(r.username, "a,b=c");
  r = mech->ProvideKeys(&keys);
  r = mech->Step(client.Final(r.data));
  ASSERT_EQ(r.kind, Kind::kSuccess) << FailureCondition(r.failure);
  EXPECT_EQ(r.username, "a,b=c");
}

TEST(SaslNameTest, BadEscapeIsMalformed) {
  for (std::string user : {"a=ZZ", "a=2", "a=", "=2c"}) {
    auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
    EXPECT_FAILURE(mech->Start("n,,n=" + user + ",r=abc"), Failure::kMalformedRequest) << user;
  }
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  EXPECT_FAILURE(mech->Start("n,a=x=ZZ,n=romeo,r=abc"s), Failure::kMalformedRequest);
}

TEST(SaslNameTest, EscapedAuthzidMatchesEscapedUsername) {
  auto mech = CreateMechanism("SCRAM-SHA-256", ChannelBinding{});
  StepResult r = mech->Start("n,a=a=2Cb,n=a=2Cb,r=abc"s);
  EXPECT_EQ(r.kind, Kind::kNeedKeys);
  EXPECT_EQ(r.username, "a,b");
}

// --- PLAIN --------------------------------------------------------------------

class PlainTest : public ::testing::Test {
 protected:
  StepResult Run(std::string_view message, const store::ScramKeys* keys) {
    mech_ = CreateMechanism("PLAIN", ChannelBinding{});
    StepResult r = mech_->Start(message);
    if (r.kind != Kind::kNeedKeys) return r;
    EXPECT_EQ(r.key_hash, Hash::kSha1);
    return mech_->ProvideKeys(keys);
  }

  store::ScramKeys keys_ = Keys(Hash::kSha1, "pencil");
  std::unique_ptr<Mechanism> mech_;
};

TEST_F(PlainTest, GoodPasswordSucceeds) {
  StepResult r = Run("\0user\0pencil"s, &keys_);
  ASSERT_EQ(r.kind, Kind::kSuccess) << FailureCondition(r.failure);
  EXPECT_EQ(r.username, "user");
  EXPECT_EQ(r.data, "");
}

TEST_F(PlainTest, UsernameIsCaseMapped) {
  auto mech = CreateMechanism("PLAIN", ChannelBinding{});
  StepResult r = mech->Start("\0USER\0pencil"s);
  ASSERT_EQ(r.kind, Kind::kNeedKeys);
  EXPECT_EQ(r.username, "user");
  r = mech->ProvideKeys(&keys_);
  EXPECT_EQ(r.kind, Kind::kSuccess);
  EXPECT_EQ(r.username, "user");
}

TEST_F(PlainTest, PasswordIsOpaqueStringPrepared) {
  // U+00A0 NO-BREAK SPACE maps to U+0020; the keys were made with a plain space.
  store::ScramKeys keys = Keys(Hash::kSha1, "correct horse");
  EXPECT_EQ(Run("\0user\0correct\xC2\xA0horse"s, &keys).kind, Kind::kSuccess);
}

TEST_F(PlainTest, WrongPasswordIsNotAuthorized) {
  EXPECT_FAILURE(Run("\0user\0pencil2"s, &keys_), Failure::kNotAuthorized);
  EXPECT_FAILURE(Run("\0user\0Pencil"s, &keys_), Failure::kNotAuthorized);
}

TEST_F(PlainTest, UnknownUserIsNotAuthorized) {
  EXPECT_FAILURE(Run("\0nobody\0pencil"s, nullptr), Failure::kNotAuthorized);
}

TEST_F(PlainTest, Sha256KeysAreNotUsable) {
  // PLAIN asks for the SHA-1 set; a SHA-256 set in its place is not a match.
  store::ScramKeys sha256 = Keys(Hash::kSha256, "pencil");
  EXPECT_FAILURE(Run("\0user\0pencil"s, &sha256), Failure::kNotAuthorized);
}

TEST_F(PlainTest, MalformedMessages) {
  const std::string cases[] = {
      ""s,                                   // nothing
      "userpencil"s,                         // no NUL
      "user\0pencil"s,                       // one NUL
      "\0\0pencil"s,                         // empty authcid
      "\0user\0"s,                           // empty password
      "\0user\0pen\0cil"s,                   // three NULs
      "\0\0"s,                               // all empty
      "\0user\0"s + std::string(5000, 'x'),  // too long
  };
  for (const std::string& message : cases) {
    EXPECT_FAILURE(Run(message, &keys_), Failure::kMalformedRequest) << testing::PrintToString(message);
  }
}

TEST_F(PlainTest, AuthzidCases) {
  EXPECT_EQ(Run("user\0user\0pencil"s, &keys_).kind, Kind::kSuccess);
  EXPECT_EQ(Run("USER\0USER\0pencil"s, &keys_).kind, Kind::kSuccess);  // as sent
  EXPECT_EQ(Run("user\0USER\0pencil"s, &keys_).kind, Kind::kSuccess);  // normalised
  EXPECT_FAILURE(Run("admin\0user\0pencil"s, &keys_), Failure::kInvalidAuthzid);
  EXPECT_FAILURE(Run("user@example.com\0user\0pencil"s, &keys_), Failure::kInvalidAuthzid);
}

TEST_F(PlainTest, PrecisRejections) {
  EXPECT_FAILURE(Run("\0us er\0pencil"s, &keys_), Failure::kNotAuthorized);  // space in username
  EXPECT_FAILURE(Run("\0user\0pen\x01"
                     "cil"s,
                     &keys_),
                 Failure::kNotAuthorized);                                // control char in password
  EXPECT_FAILURE(Run("\0user\0\xff"s, &keys_), Failure::kNotAuthorized);  // invalid UTF-8
}

TEST_F(PlainTest, NoInitialResponse) {
  auto mech = CreateMechanism("PLAIN", ChannelBinding{});
  StepResult r = mech->Start(std::nullopt);
  ASSERT_EQ(r.kind, Kind::kChallenge);
  EXPECT_EQ(r.data, "");
  r = mech->Step("\0user\0pencil"s);
  ASSERT_EQ(r.kind, Kind::kNeedKeys);
  EXPECT_EQ(mech->ProvideKeys(&keys_).kind, Kind::kSuccess);
  EXPECT_FAILURE(mech->Step("\0user\0pencil"s), Failure::kMalformedRequest);
}

TEST_F(PlainTest, OutOfOrder) {
  auto mech = CreateMechanism("PLAIN", ChannelBinding{});
  EXPECT_FAILURE(mech->ProvideKeys(&keys_), Failure::kTemporaryAuthFailure);
  mech = CreateMechanism("PLAIN", ChannelBinding{});
  ASSERT_EQ(mech->Start("\0user\0pencil"s).kind, Kind::kNeedKeys);
  EXPECT_FAILURE(mech->Step("\0user\0pencil"s), Failure::kMalformedRequest);
}

// --- PBKDF2 --------------------------------------------------------------------

std::string FromHex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

std::string OpensslPbkdf2(Hash hash, std::string_view password, std::string_view salt, int iterations) {
  std::string out(internal::DigestSize(hash), '\0');
  EXPECT_EQ(
      PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                        iterations, hash == Hash::kSha1 ? EVP_sha1() : EVP_sha256(),
                        static_cast<int>(out.size()), reinterpret_cast<unsigned char*>(out.data())),
      1);
  return out;
}

TEST(Pbkdf2Test, Rfc6070Sha1Vectors) {
  // RFC 6070 §2 (the 25-byte output's first 20 bytes for the long case).
  EXPECT_EQ(internal::Pbkdf2(Hash::kSha1, "password", "salt", 1),
            FromHex("0c60c80f961f0e71f3a9b524af6012062fe037a6"));
  EXPECT_EQ(internal::Pbkdf2(Hash::kSha1, "password", "salt", 2),
            FromHex("ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"));
  EXPECT_EQ(internal::Pbkdf2(Hash::kSha1, "password", "salt", 4096),
            FromHex("4b007901b765489abead49d926f721d065a429c1"));
  EXPECT_EQ(
      internal::Pbkdf2(Hash::kSha1, "passwordPASSWORDpassword", "saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096),
      FromHex("3d2eec4fe41c849b80c8d83662c0e44a8b291a96"));
  EXPECT_EQ(internal::Pbkdf2(Hash::kSha1, "pass\0word"s, "sa\0lt"s, 4096).substr(0, 16),
            FromHex("56fa6aa75548099dcc37d7f03425e0c3"));
}

TEST(Pbkdf2Test, MatchesOpenssl) {
  // Passwords shorter than, equal to and longer than SHA-1's 64-byte block
  // (a longer key is hashed first), salts of several lengths, and iteration
  // counts around the loop's edges.
  for (Hash hash : {Hash::kSha1, Hash::kSha256}) {
    for (size_t password_size : {1u, 20u, 63u, 64u, 65u, 200u}) {
      for (size_t salt_size : {1u, 16u, 55u, 64u, 100u}) {
        for (int iterations : {1, 2, 3, 4096}) {
          std::string password = internal::RandomBytes(password_size);
          std::string salt = internal::RandomBytes(salt_size);
          EXPECT_EQ(internal::Pbkdf2(hash, password, salt, iterations),
                    OpensslPbkdf2(hash, password, salt, iterations))
              << internal::HashName(hash) << " password " << password_size << " salt " << salt_size << " c "
              << iterations;
        }
      }
    }
  }
}

// --- Keys, names, failures --------------------------------------------------------

TEST(DeriveKeysTest, ShapesAndRandomSalt) {
  for (Hash hash : {Hash::kSha1, Hash::kSha256}) {
    Result<store::ScramKeys> a = DeriveKeys(hash, "pencil", 4096);
    Result<store::ScramKeys> b = DeriveKeys(hash, "pencil", 4096);
    ASSERT_TRUE(a.ok() && b.ok());
    size_t digest = hash == Hash::kSha1 ? 20 : 32;
    EXPECT_EQ(a->salt.size(), 16u);
    EXPECT_EQ(a->iterations, 4096);
    EXPECT_EQ(a->stored_key.size(), digest);
    EXPECT_EQ(a->server_key.size(), digest);
    EXPECT_NE(a->salt, b->salt);
    EXPECT_NE(a->stored_key, b->stored_key);
  }
}

TEST(DeriveKeysTest, Rfc5802Keys) {
  // From the RFC 5802 §5 exchange: the server signature proves ServerKey;
  // StoredKey is checked here against an independent computation.
  std::string salt = UnB64("QSXCR+Q6sek8bf92");
  Result<store::ScramKeys> keys = DeriveKeysWithSalt(Hash::kSha1, "pencil", salt, 4096);
  ASSERT_TRUE(keys.ok());
  std::string salted(20, '\0');
  PKCS5_PBKDF2_HMAC("pencil", 6, reinterpret_cast<const unsigned char*>(salt.data()),
                    static_cast<int>(salt.size()), 4096, EVP_sha1(), 20,
                    reinterpret_cast<unsigned char*>(salted.data()));
  EXPECT_EQ(keys->stored_key, ClientDigest(Hash::kSha1, ClientHmac(Hash::kSha1, salted, "Client Key")));
  EXPECT_EQ(keys->server_key, ClientHmac(Hash::kSha1, salted, "Server Key"));
}

TEST(DeriveKeysTest, RejectsBadInput) {
  EXPECT_EQ(DeriveKeys(Hash::kSha256, "", 4096).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(DeriveKeys(Hash::kSha256, "pw\x01", 4096).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(DeriveKeys(Hash::kSha256, "pw", 0).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(DeriveKeys(Hash::kSha256, "pw", -1).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(DeriveKeys(Hash::kSha256, "pw", int64_t{1} << 31).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(DeriveKeysWithSalt(Hash::kSha256, "pw", "", 4096).error().code, Errc::kInvalidArgument);
}

TEST(MechanismTest, CreateByName) {
  ChannelBinding plus = PlusBinding();
  for (const char* name :
       {"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "PLAIN"}) {
    EXPECT_NE(CreateMechanism(name, plus), nullptr) << name;
  }
  for (const char* name : {"", "scram-sha-256", "SCRAM-SHA-512", "DIGEST-MD5", "EXTERNAL", "PLAIN "}) {
    EXPECT_EQ(CreateMechanism(name, plus), nullptr) << name;
  }
}

TEST(MechanismTest, Names) {
  ChannelBinding none;
  EXPECT_EQ(MechanismNames(none), (std::vector<std::string>{"SCRAM-SHA-256", "SCRAM-SHA-1"}));
  ChannelBinding tls;
  tls.tls = true;
  EXPECT_EQ(MechanismNames(tls), (std::vector<std::string>{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}));
  EXPECT_EQ(MechanismNames(PlusBinding()),
            (std::vector<std::string>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
                                      "SCRAM-SHA-1", "PLAIN"}));
}

TEST(FailureTest, ConditionNames) {
  EXPECT_STREQ(FailureCondition(Failure::kNone), "");
  EXPECT_STREQ(FailureCondition(Failure::kAborted), "aborted");
  EXPECT_STREQ(FailureCondition(Failure::kAccountDisabled), "account-disabled");
  EXPECT_STREQ(FailureCondition(Failure::kEncryptionRequired), "encryption-required");
  EXPECT_STREQ(FailureCondition(Failure::kIncorrectEncoding), "incorrect-encoding");
  EXPECT_STREQ(FailureCondition(Failure::kInvalidAuthzid), "invalid-authzid");
  EXPECT_STREQ(FailureCondition(Failure::kInvalidMechanism), "invalid-mechanism");
  EXPECT_STREQ(FailureCondition(Failure::kMalformedRequest), "malformed-request");
  EXPECT_STREQ(FailureCondition(Failure::kMechanismTooWeak), "mechanism-too-weak");
  EXPECT_STREQ(FailureCondition(Failure::kNotAuthorized), "not-authorized");
  EXPECT_STREQ(FailureCondition(Failure::kTemporaryAuthFailure), "temporary-auth-failure");
}

TEST(Base64Test, StrictDecoding) {
  using internal::Base64Decode;
  EXPECT_EQ(Base64Decode(""), "");
  EXPECT_EQ(Base64Decode("biws"), "n,,");
  EXPECT_EQ(Base64Decode("YQ=="), "a");
  EXPECT_EQ(Base64Decode("YWI="), "ab");
  EXPECT_EQ(Base64Decode("YQ="), std::nullopt);
  EXPECT_EQ(Base64Decode("Y==="), std::nullopt);
  EXPECT_EQ(Base64Decode("=QQQ"), std::nullopt);
  EXPECT_EQ(Base64Decode("Y=Q="), std::nullopt);
  EXPECT_EQ(Base64Decode(" YQ=="), std::nullopt);
  EXPECT_EQ(Base64Decode("YQ==\n"), std::nullopt);
  EXPECT_EQ(Base64Decode("Y-_="), std::nullopt);
  EXPECT_EQ(internal::Base64Encode("n,,"), "biws");
}

}  // namespace
}  // namespace nines::xmpp::sasl
