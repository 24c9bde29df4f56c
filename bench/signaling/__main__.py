from bench.signaling.run import main

main()
