/* tusc — argv to config to server. The only file that knows argv. */
#include <stdio.h>

#include "config/config.h"
#include "server.h"

int main(int argc, char **argv) {
  tusc_config_t cfg;
  int rc = tusc_config_parse(&cfg, argc, argv, stdout, stderr);
  if (rc == 0)
    rc = tusc_server_run(&cfg);
  else if (rc == TUSC_CONFIG_EXIT_OK)
    rc = 0;
  tusc_config_dispose(&cfg);
  return rc;
}
