"""Training objectives as switches, for the paper's ablation (Table 3).

Every objective trains the same model code on the same data; a switch only removes a branch
or a loss term:

| name       | encoded branch (cVAE) | token layer | random branch + L_lat | L_dist |
|------------|-----------------------|-------------|-----------------------|--------|
| pix2pix    | no (z = 0, GAN + L1)  | –           | no                    | no     |
| cvae-gan   | yes                   | no          | no                    | no     |
| bicycle    | yes                   | no          | yes                   | no     |
| vae        | yes                   | yes         | no                    | no     |
| vae+lat    | yes                   | yes         | yes                   | no     |
| full       | yes                   | yes         | yes                   | yes    |
| full-noatt | yes                   | no          | yes                   | yes    |

``mle`` is the non-adversarial baseline of the paper's text rows (CNN-RNN for captions, an
attention RNN for translation): the same generator trained by reconstruction (cross-entropy for
text, L1 for images) alone — no z, no discriminator update, no GAN term. For speech it is the
Tacotron-like baseline of the paper's TTS rows.

``gst`` is the paper's GST-Tacotron row: a reference encoder and the token layer, trained by
reconstruction alone — the reference embedding is deterministic (the posterior mean, no KL, no
sampling), there is no random branch and no discriminator. Only a reference (or explicit token
weights) can set its style; random codes are not trained to mean anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from m3dgan.errors import ConfigError


@dataclass(frozen=True)
class Objective:
    name: str
    encoded_branch: bool  # z_r from Enc_r(R), reconstruction + KL (L_VAE-GAN)
    tokens: bool  # universal token layer between the Gaussian embedding and G
    random_branch: bool  # z_s ~ N(0, I), GAN on G(S, z_s) and latent regression (L_lat-GAN)
    distance: bool  # distance regularization between G(S, z_s) and G(S, z_r) (L_dist)
    adversarial: bool = True  # GAN terms and discriminator updates (False: ``mle`` baseline)
    variational: bool = True  # Gaussian posterior + KL (False: ``gst``, a deterministic embedding)

    @property
    def uses_z(self) -> bool:
        return self.encoded_branch or self.random_branch


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("pix2pix", False, False, False, False),
        Objective("cvae-gan", True, False, False, False),
        Objective("bicycle", True, False, True, False),
        Objective("vae", True, True, False, False),
        Objective("vae+lat", True, True, True, False),
        Objective("full", True, True, True, True),
        Objective("full-noatt", True, False, True, True),
        Objective("mle", False, False, False, False, adversarial=False),
        Objective("gst", True, True, False, False, adversarial=False, variational=False),
    )
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; choose from {list(OBJECTIVES)}")
    return OBJECTIVES[name]
