"""Local tooling: synthetic traffic, the development broker, the demo. No production worker
imports it."""
