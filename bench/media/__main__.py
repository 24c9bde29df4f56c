from bench.media.run import main

main()
