"""etcd release tarballs and their published SHA-256 sums: the versions a member can install.

Each value is the sum etcd publishes in the release's SHA256SUMS for
etcd-v<version>-linux-<arch>.tar.gz, as recorded by projects that pin them:
3.5.x from kubespray's `etcd_binary_checksums` (roles/kubespray_defaults/vars/main/checksums.yml);
3.4.27 from OpenStack kolla (kolla/common/sources.py); 3.6.x from build scripts of k0s,
chromebrew, cybozu-go (sabakan, etcdpasswd) and kolla, each 3.6 amd64 value seen in at least
two unrelated projects. The arm64 values of 3.6.11 and 3.6.14 were found in one project each.
A wrong value fails closed: the bootstrap script refuses the download.
"""

from __future__ import annotations

DOWNLOAD_URL = "https://github.com/etcd-io/etcd/releases/download/v{version}/etcd-v{version}-linux-{arch}.tar.gz"

# EC2 architecture names to etcd's release names.
ETCD_ARCH = {"x86_64": "amd64", "arm64": "arm64"}

SHA256: dict[str, dict[str, str]] = {
    "3.4.27": {
        "amd64": "a32d21e006252dbc3405b0645ba8468021ed41376974b573285927bf39b39eb9",
        "arm64": "ed7e257c225b9b9545fac22246b97f4074a4b5109676e92dbaebfb9315b69cc0",
    },
    "3.5.3": {
        "amd64": "e13e119ff9b28234561738cd261c2a031eb1c8688079dcf96d8035b3ad19ca58",
        "arm64": "8b00f2f51568303799368ee4a3c9b9ff8a3dd9f8b7772c4f6589e46bc62f7115",
    },
    "3.5.4": {
        "amd64": "b1091166153df1ee0bb29b47fb1943ef0ddf0cd5d07a8fe69827580a08134def",
        "arm64": "8e9c2c28ed6b35f36fd94300541da10e1385f335d677afd8efccdcba026f1fa7",
    },
    "3.5.5": {
        "amd64": "7910a2fdb1863c80b885d06f6729043bff0540f2006bf6af34674df2636cb906",
        "arm64": "a8d177ae8ecfd1ef025c35ac8c444041d14e67028c1a7b4eda3a69a8dee5f9c3",
    },
    "3.5.6": {
        "amd64": "4db32e3bc06dd0999e2171f76a87c1cffed8369475ec7aa7abee9023635670fb",
        "arm64": "888e25c9c94702ac1254c7655709b44bb3711ebaabd3cb05439f3dd1f2b51a87",
    },
    "3.5.7": {
        "amd64": "a43119af79c592a874e8f59c4f23832297849d0c479338f9df36e196b86bc396",
        "arm64": "1a35314900da7db006b198dd917e923459b462128101736c63a3cda57ecdbf51",
    },
    "3.5.8": {
        "amd64": "d4c1b8d90ad53658f12ffc293afc5694b7bc6cb093af609188649a799e1cc8dc",
        "arm64": "3f4441b293a2d0d4d2f8b2cd9504376e15818f7b865ef4b436e8e6f865f895ff",
    },
    "3.5.9": {
        "amd64": "d59017044eb776597eca480432081c5bb26f318ad292967029af1f62b588b042",
        "arm64": "bb201c106a61bbab59e2d9f37f4bdff99d50201f513c66b4578741eab581fb28",
    },
    "3.5.10": {
        "amd64": "26e90d024fa2310bc52bb40e7f2132e81640b55f8fc446c00ae07e30af2a44fd",
        "arm64": "ff74a6018d9b2a1320bff30e5a11b4f2f5c2a3d147df8a8bad53c01b9f800ee1",
    },
    "3.5.11": {
        "amd64": "e256885e753dc99001335e099d3c2eb8cf21a865a087ee4d7e3665752ae5929a",
        "arm64": "6edf0cddc8fa2d7674129abe2e44d5a37cc3a6e3b500c13c6cbc2ed2ecf08bf4",
    },
    "3.5.12": {
        "amd64": "f2ff0cb43ce119f55a85012255609b61c64263baea83aa7c8e6846c0938adca5",
        "arm64": "31f30c01918771ece28d6e553e0f33be9483ced989896ecf6bbe1edb07786141",
    },
    "3.5.13": {
        "amd64": "31e6fcbee0e8c3df27cf1ba69b522e338377f5ed6447f5d05700aee367f3b7e7",
        "arm64": "2854993bf622764ccdeb7a146fae2965cb0fcba93c5c8f391e0d5f153c8a7a02",
    },
    "3.5.14": {
        "amd64": "b0b34298f53f6830f08e7ddc57fc74dc45563216a66e94d9e6b0b9e0b0281b34",
        "arm64": "90510c79c4aae3c3313691f5770fc53b3ac883338fc0254bf8d22460acd3c19d",
    },
    "3.5.15": {
        "amd64": "3f6b48d8c2844699f2b19c1880508ecf63e1489769ed37ebb97495d5cd848a89",
        "arm64": "5aa28b435edb1f22bf6455f754e16a13e3e4eb1ad8fc7c22ad47aa8e722febf2",
    },
    "3.5.16": {
        "amd64": "b414b27a5ad05f7cb01395c447c85d3227e3fb1c176e51757a283b817f645ccc",
        "arm64": "8e68c55e6d72b791a9e98591c755af36f6f55aa9eca63767822cd8a3817fdb23",
    },
    "3.5.17": {
        "amd64": "eff6ac621d41711085d0f38fab17d8fa3705f6326c3ff11301a1f5a71fc94edd",
        "arm64": "7d717a62520bf39fa1115dfbb1df79479ff74b5eda0914f4132bfa60a48b9549",
    },
    "3.5.18": {
        "amd64": "6ddde039a7a506badf34e7edfb38e1ea90e36f05c8cfceba602045df623d86fa",
        "arm64": "c2bcaf465537d6d47c8bb82a69e31f786f32257050e3bca445bc4e63479ec714",
    },
    "3.5.19": {
        "amd64": "16ae742def5f330800590e8d505d72830a3b0b7012e559e6bd76f0bc9864bf42",
        "arm64": "a786fd2c92c3c0404586ffedf1b318e4944a17aefed1fa6566f5712ddb8359ad",
    },
    "3.5.20": {
        "amd64": "9ac85616fb8c0e45f485074dde0258ca2b7b42f1dd5320821af5a8b66daf7072",
        "arm64": "f034232e6fb64b0d89c45fd78b8b4c3e9fb8d69605dddddcdebf5d7cd96a1531",
    },
    "3.5.21": {
        "amd64": "adddda4b06718e68671ffabff2f8cee48488ba61ad82900e639d108f2148501c",
        "arm64": "95bf6918623a097c0385b96f139d90248614485e781ec9bee4768dbb6c79c53f",
    },
    "3.5.22": {
        "amd64": "20174ab70a6f3df94da13ecac4610f42c47d25af82426f21c112c2c841ec499a",
        "arm64": "22aca5a253c4a9f2850300b0a1dd209587586ff0e985f5cb1c34e9e5edc07848",
    },
    "3.5.23": {
        "amd64": "8b50d62d38cb2de005b42227dd14b33f6e01758970f248f9257789ecfaf634c9",
        "arm64": "d95118595a9556a29775f99c1ef2ee16f6be113df76b7178643a2bfd6a6f37c3",
    },
    "3.5.24": {
        "amd64": "042497e2ddcee06f22e5d486d81f58affa26b53ee423e2a6aaca3d3ea98c8191",
        "arm64": "efc01f6b3fbef0f000cb53bcad4845c116d7fdd8769ca39d9c40d2fe4d2e509f",
    },
    "3.5.25": {
        "amd64": "168af82b59772e1811a9af7b358d42f5c6df44e0d9767afb006ecf12c4bbd607",
        "arm64": "419dce0b679df31cc45201ef2449b7a6a48e9d241af01741957c9ac86a35badc",
    },
    "3.5.26": {
        "amd64": "0a682a91201dc8351d507210bc30b021a11e254eab806f03224b51e8fad29abb",
        "arm64": "93ac1667df0e178ea6d152476ce4088df4075604fe4bc7f85f4719e863cd030b",
    },
    "3.5.27": {
        "amd64": "0aad9a9e4e0817a021e933f9806a2b2960a62f949ad5a3d6436d8886945cb1bc",
        "arm64": "1277309f540c5a0329c428f95455c9f76d24f768c8d28fd2753e891c379053fa",
    },
    "3.6.5": {
        "amd64": "66bad39ed920f6fc15fd74adcb8bfd38ba9a6412f8c7852d09eb11670e88cac3",
        "arm64": "7010161787077b07de29b15b76825ceacbbcedcb77fe2e6832f509be102cab6b",
    },
    "3.6.9": {"amd64": "633136f13fcadac52e5c0ddcb97912643af6fcb9cb362e75774d0f96f7666396"},
    "3.6.11": {
        "amd64": "8756f7a4eaf921668a83de0bf13c0f65cae9186a165696e3ae8396afe6f557ed",
        "arm64": "5302f1a6157c34eb0568c75fba9d06da98353576df04399f08645bef634acd2d",
    },
    "3.6.13": {"amd64": "b4928654aed84d90952620c7144555e4186d795e1e7414e65fe0cf6265fd0465"},
    "3.6.14": {
        "amd64": "ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5",
        "arm64": "fa1b80565ee6fc2df1ae6f57a508b221f3ecc7d591c317c581cd8281b0842b3e",
    },
}


def download_url(version: str, arch: str) -> str:
    return DOWNLOAD_URL.format(version=version, arch=arch)


def known_versions(arch: str) -> list[str]:
    return [version for version, sums in SHA256.items() if arch in sums]
