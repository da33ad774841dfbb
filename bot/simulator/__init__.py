"""`kling-bot simulate`: an offline sunra.ai stand-in whose jobs end in real videos of their picture."""

from bot.simulator.server import Simulator, SimulatorSettings

__all__ = ["Simulator", "SimulatorSettings"]
