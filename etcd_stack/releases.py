"""etcd release tarballs and their published SHA-256 sums: the versions a member can install.

Each value is the sum etcd publishes in the release's SHA256SUMS for
etcd-v<version>-linux-<arch>.tar.gz, as recorded by projects that pin them:
3.5.6 and later, and every 3.6 release, from kubespray's `etcd_binary_checksums`
(roles/kubespray_defaults/vars/main/checksums.yml, written by its component_hash_update script from
each release's SHA256SUMS; snapshot of 2026-08-21: 3.5.33 and 3.6.14 are the newest there);
3.5.3-3.5.5 from older kubespray releases; 3.4.27 from OpenStack kolla (kolla/common/sources.py;
no source reachable here records the sums of a later 3.4 patch, whose newest is 3.4.45);
3.7.1 from three unrelated projects' build scripts that pin both architectures.
A wrong value fails closed: the bootstrap script refuses the download.

Newer patches exist (the Go module proxy dates them: 3.5.34, 3.6.15 and 3.7.2 on 2026-09-22; 3.5.35,
3.6.16 and 3.7.3 on 2026-10-22) but no source reachable from the machines this project is built on
records their tarballs' sums; they join the table with sums copied from each release's SHA256SUMS.
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
    "3.5.28": {
        "amd64": "e11b6fab2ffbf0a1d6ee8f6227594045a19e0974ec779c42b8b5bb1942b2abe0",
        "arm64": "779a741604d2ff45240b277812f6c300bca71754adfd8de1436a3f2df3a18e67",
    },
    "3.5.29": {
        "amd64": "7692f812db0bfeee3a731c45046864cf729e552bad82ce7cb5b507053d033267",
        "arm64": "10817d916de91fdab373947977682e083f0a1ac7f37650c1b690c2a746e4c269",
    },
    "3.5.30": {
        "amd64": "a495115162845640be08c6cda069ff961260dbced53207c5a83b1b006ff2ea8e",
        "arm64": "4d19473d2567a58e1dbf556e0813b91d506666e58d23bfd5370660c67639eb5e",
    },
    "3.5.31": {
        "amd64": "e76b75c73b10196dfeb1c52fcdf9f4014e51f3082f65f28fb2e69a7bec1f916b",
        "arm64": "1fc441acb75486c076db0900470b18da61ee529a5d54df7c619dfc12dd13b984",
    },
    "3.5.32": {
        "amd64": "83532f9290ee89106c4c9d0467220f65623c1faadaab800d727f7beccce4d7dd",
        "arm64": "89f3ec49bc026c77ab5862c34f0623f09b48ec75e659082c92829669c6e36b3c",
    },
    "3.5.33": {
        "amd64": "5025b5b24d81a9616b6e284ccd439b9a3df055ef8fdcdc142af3ec8f6a3b3c95",
        "arm64": "0764c5c0acef155f4bfa0487791cc5776adef66315bf16ec0653883bfd463a90",
    },
    "3.6.0": {
        "amd64": "42305b0dcbba7b6fdff0382d0c7b99c42026c88c44847a619ab58cde216725d9",
        "arm64": "81477b120ef66ff338fe7de63d894e5feec17e6e1f1d98507676832e089d9b58",
    },
    "3.6.1": {
        "amd64": "1324664bfe56d178d1362a57462ca5a7b26a6d2cbe9e1c94b6820e32cb82d673",
        "arm64": "5f8ed6e314df44128c218decbf0d146cf882583d05c6f6d9023ce905d232aaec",
    },
    "3.6.2": {
        "amd64": "4b5d55d61e2218fab7c1cc1c00b341c469159ecde8cedd575fa858683f67e9f4",
        "arm64": "79d0a2488967aa07ecfde79158b1dab458158522f834810c2827eecac4695a31",
    },
    "3.6.3": {
        "amd64": "3f3b4aa9785d86322c50b296eebdc7a0a57b27065190154b5858bf6a7512ac10",
        "arm64": "4b39989093699da7502d1cdd649c412055a2bddd26b3d80ed87d0db31957075c",
    },
    "3.6.4": {
        "amd64": "4d5f3101daa534e45ccaf3eec8d21c19b7222db377bcfd5e5a9144155238c105",
        "arm64": "323421fa279f4f3d7da4c7f2dfa17d9e49529cb2b4cdf40899a7416bccdde42d",
    },
    "3.6.5": {
        "amd64": "66bad39ed920f6fc15fd74adcb8bfd38ba9a6412f8c7852d09eb11670e88cac3",
        "arm64": "7010161787077b07de29b15b76825ceacbbcedcb77fe2e6832f509be102cab6b",
    },
    "3.6.6": {
        "amd64": "887afaa4a99f22d802ccdfbe65730a5e79aa5c9ce2c8799c67e9d804c50ecedb",
        "arm64": "8a15f5427c111ff4692753682374970fb68878401d946c2c28bdad6857db652f",
    },
    "3.6.7": {
        "amd64": "cf8af880c5a01ee5363cefa14a3e0cb7e5308dcf4ed17a6973099c9a7aee5a9a",
        "arm64": "ef5fc443cf7cc5b82738f3c28363704896551900af90a6d622cae740b5644270",
    },
    "3.6.8": {
        "amd64": "cf9cfe91a4856cb90eed9c99e6aee4b708db2c7888b88a6f116281f04b0ea693",
        "arm64": "438f56a700d17ce761510a3e63e6fa5c1d587b2dd4d7a22c179c09a649366760",
    },
    "3.6.9": {
        "amd64": "633136f13fcadac52e5c0ddcb97912643af6fcb9cb362e75774d0f96f7666396",
        "arm64": "b51e433724325b66770019c4819d091b8965d2e81c07571a46e0619da1c8ece6",
    },
    "3.6.10": {
        "amd64": "ed579fafab5701e3aaa95509969e7bc74776a4ae5269d32e3928408b406456ec",
        "arm64": "e40dc34b7a512b99c651f7700c1014e9b76e02415e2e24365b248966b173524c",
    },
    "3.6.11": {
        "amd64": "8756f7a4eaf921668a83de0bf13c0f65cae9186a165696e3ae8396afe6f557ed",
        "arm64": "5302f1a6157c34eb0568c75fba9d06da98353576df04399f08645bef634acd2d",
    },
    "3.6.12": {
        "amd64": "d2564bb50b58e52fbaf3bde4a9561a1d04e20cdc761f795580e4d615d5d41355",
        "arm64": "147afc710e164fa342ad8561bcca8903f3913bd9fb9ae0c83c857b1d868189cc",
    },
    "3.6.13": {
        "amd64": "b4928654aed84d90952620c7144555e4186d795e1e7414e65fe0cf6265fd0465",
        "arm64": "5ab53ff70301fa9d782fa4b59fdfc1fae49ffdf427a0afb3cd313a93449800fc",
    },
    "3.6.14": {
        "amd64": "ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5",
        "arm64": "fa1b80565ee6fc2df1ae6f57a508b221f3ecc7d591c317c581cd8281b0842b3e",
    },
    "3.7.1": {
        "amd64": "e8cd3fa8064c98137c5dbd78b76f969417ace84efb83c481041d7a52ffdd8fb9",
        "arm64": "d7e25e08f694b6ed7792fc7b7a891fe2c3f3d3dccfe2f3bfdb1547b0eb75b6da",
    },
}


def download_url(version: str, arch: str) -> str:
    return DOWNLOAD_URL.format(version=version, arch=arch)


def known_versions(arch: str) -> list[str]:
    return [version for version, sums in SHA256.items() if arch in sums]


def newest(line: tuple[int, int], arch: str = "amd64") -> str:
    """The newest release of a minor line whose sum for `arch` is known."""
    versions = [tuple(int(part) for part in v.split(".")) for v in known_versions(arch)]
    return ".".join(map(str, max(v for v in versions if v[:2] == line)))
