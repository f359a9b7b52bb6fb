"""`python -m bot.cli`: the same command as `paybot`."""

from bot.cli.main import main

main()
