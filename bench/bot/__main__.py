from bench.bot.run import main

main()
