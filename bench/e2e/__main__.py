from bench.e2e.run import main

main()
