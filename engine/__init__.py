"""campaigns-as-code: a declarative, GitOps engine for Mini Program Platform notifications."""

__version__ = "0.1.0"
